"""Reading an existing Feast repository's definitions, without Feast and without running it.

A Feast repository is a folder with ``feature_store.yaml`` and Python files that build
``Entity``, ``FileSource``, ``FeatureView``, ``Field`` and ``FeatureService`` objects. This
module reads those files' syntax tree (it never imports or runs them): calls of those
classes with literal arguments, names bound to earlier definitions, ``timedelta(...)``,
the types of ``feast.types`` and a service's projections ``view[["a", "b"]]``. What has no
counterpart here (other sources, on-demand and stream views, request sources, fields of
map, JSON or struct types) is left out and listed, so that nothing is dropped silently.
"""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelhost.entities import ColumnType
from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.features.definitions import (
    Entity,
    FeatureField,
    FeatureRepo,
    FeatureService,
    FeatureView,
    FileSource,
    check,
)

_TYPES = {"Float32": ColumnType.FLOAT, "Float64": ColumnType.DOUBLE,
          "Int32": ColumnType.INTEGER, "Int64": ColumnType.LONG, "String": ColumnType.STRING,
          "Bool": ColumnType.BOOLEAN, "UnixTimestamp": ColumnType.DATETIME}
_KINDS = {"Entity", "FileSource", "FeatureView", "Field", "FeatureService", "timedelta"}


@dataclass
class FeastImport:
    repo: FeatureRepo
    skipped: list[str] = field(default_factory=list)  # what was left out, and why


@dataclass(frozen=True)
class _Projection:
    view: FeatureView
    features: tuple[str, ...]


class _Unsupported(Exception):  # noqa: N818 - a signal inside this module
    pass


def read_feast_repo(folder: Path) -> FeastImport:
    """The definitions of the Feast repository in ``folder``."""
    if not (folder / "feature_store.yaml").is_file():
        raise FileNotFoundInputError(str(folder / "feature_store.yaml"))
    reader = _Reader(folder)
    for path in sorted(folder.rglob("*.py")):
        if any(part.startswith(".") or part in ("__pycache__", "venv", ".venv")
               for part in path.relative_to(folder).parts):
            continue
        reader.read(path)
    repo = FeatureRepo({e.name: e for e in reader.entities},
                       {v.name: v for v in reader.views},
                       {s.name: s for s in reader.services})
    check(repo)
    return FeastImport(repo, reader.skipped)


class _Reader:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: dict[str, Any] = {}
        self.entities: list[Entity] = []
        self.views: list[FeatureView] = []
        self.services: list[FeatureService] = []
        self.skipped: list[str] = []

    def read(self, path: Path) -> None:
        where = path.relative_to(self.folder).as_posix()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        except (SyntaxError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{where} is not valid Python: {exc}") from None
        for node in tree.body:
            target, value = _assignment(node)
            if value is None:
                if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                        and node.decorator_list):
                    self.skipped.append(f"{where}:{node.lineno}: {node.name} (a decorated "
                                        "function: on-demand views are not read)")
                continue
            kind = _call_name(value)
            if kind not in _KINDS:
                if kind is not None and kind[:1].isupper():
                    self.skipped.append(f"{where}:{node.lineno}: {target or kind} "
                                        f"({kind} has no counterpart)")
                continue
            try:
                made = self.value(value)
            except _Unsupported as exc:
                self.skipped.append(f"{where}:{node.lineno}: {target or kind} ({exc})")
                continue
            if target is not None:
                self.names[target] = made
            if isinstance(made, Entity):
                self.entities.append(made)
            elif isinstance(made, FeatureView):
                self.views.append(made)
            elif isinstance(made, FeatureService):
                self.services.append(made)

    # --- values ------------------------------------------------------------------------

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values,
                                                                  strict=True) if k}
        if isinstance(node, ast.Name):
            if node.id in _TYPES:
                return _TYPES[node.id]
            if node.id in self.names:
                return self.names[node.id]
            raise _Unsupported(f"{node.id} has no counterpart here")
        if isinstance(node, ast.Attribute) and node.attr in _TYPES:
            return _TYPES[node.attr]  # types.Float32
        if isinstance(node, ast.Subscript):
            view = self.value(node.value)
            features = self.value(node.slice)
            if isinstance(view, FeatureView) and isinstance(features, list):
                return _Projection(view, tuple(map(str, features)))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _Unsupported(f"{ast.unparse(node)[:60]} is not a literal")

    def call(self, node: ast.Call) -> Any:
        kind = _call_name(node)
        if node.args and kind != "timedelta":
            raise _Unsupported(f"{kind} is called with positional arguments")
        kwargs = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if kind == "timedelta":
            args = [self.value(a) for a in node.args]
            return dt.timedelta(*args, **{k: self.value(v) for k, v in kwargs.items()})
        if kind == "Field":
            dtype = self.value(kwargs["dtype"]) if "dtype" in kwargs else None
            if not isinstance(dtype, ColumnType):
                raise _Unsupported(f"the type {ast.unparse(kwargs.get('dtype', node))} has "
                                   "no counterpart")
            return FeatureField(str(self.value(kwargs["name"])), dtype)
        if kind == "Entity":
            keys = self.value(kwargs["join_keys"]) if "join_keys" in kwargs else (
                [self.value(kwargs["join_key"])] if "join_key" in kwargs else None)
            name = str(self.value(kwargs["name"]))
            return Entity(name, tuple(keys or [name]),
                          str(self.value(kwargs["description"])) if "description" in kwargs
                          else "")
        if kind == "FileSource":
            path = str(self.value(kwargs["path"]))
            if "://" not in path and not Path(path).is_absolute():
                path = (self.folder / path).as_posix()  # Feast reads it from the repo
            created = kwargs.get("created_timestamp_column")
            stamp = kwargs.get("timestamp_field")
            return FileSource(path, "event_timestamp" if stamp is None
                              else str(self.value(stamp)),
                              str(self.value(created)) if created is not None
                              and self.value(created) else None)
        if kind == "FeatureView":
            return self.view(kwargs)
        if kind == "FeatureService":
            features = []
            for item in self.value(kwargs["features"]):
                if isinstance(item, FeatureView):
                    features.append(item.name)
                elif isinstance(item, _Projection):
                    features += [f"{item.view.name}:{f}" for f in item.features]
                else:
                    raise _Unsupported("a feature service of views and projections only")
            return FeatureService(str(self.value(kwargs["name"])), tuple(features))
        raise _Unsupported(f"{kind} has no counterpart")

    def view(self, kwargs: dict[str, ast.expr]) -> FeatureView:
        name = str(self.value(kwargs["name"]))
        source = self.value(kwargs["source"]) if "source" in kwargs else None
        if not isinstance(source, FileSource):
            raise _Unsupported("only views over a FileSource are read")
        entities = []
        for entity in self.value(kwargs.get("entities", ast.List([]))):
            entities.append(entity.name if isinstance(entity, Entity) else str(entity))
        known = {e.name: e for e in self.entities}
        keys = {k for e in entities if e in known for k in known[e].join_keys}
        schema = []
        listed = kwargs.get("schema")
        for item in listed.elts if isinstance(listed, ast.List) else ():
            try:
                made = self.value(item)
            except _Unsupported as exc:
                self.skipped.append(f"feature view {name}: the field {_field_name(item)} "
                                    f"({exc})")
                continue
            if isinstance(made, FeatureField) and made.name not in keys:
                schema.append(made)  # (Feast lists the join keys in the schema too)
        ttl = self.value(kwargs["ttl"]) if "ttl" in kwargs else None
        return FeatureView(name, tuple(entities), tuple(schema), source,
                           ttl=ttl if isinstance(ttl, dt.timedelta) and ttl else None,
                           description=str(self.value(kwargs["description"]))
                           if "description" in kwargs else "")


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return (target.id if isinstance(target, ast.Name) else None), node.value
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        return (node.target.id if isinstance(node.target, ast.Name) else None), node.value
    if isinstance(node, ast.Expr):
        return None, node.value
    return None, None


def _field_name(node: ast.expr) -> str:
    for keyword in node.keywords if isinstance(node, ast.Call) else ():
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return ast.unparse(node)[:40]


def _call_name(node: ast.expr) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
