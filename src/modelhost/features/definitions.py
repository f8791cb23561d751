"""Feature definitions, in the shape of Feast's: entities (their join keys), feature
views (an entity's features, their types, the source they are read from with its
timestamp field, a TTL, an optional transformation shared by training and serving),
and feature services (the named set of features a model consumes).

A repository is written in YAML::

    entities:
      - name: customer
        join_keys: [customer_id]
    feature_views:
      - name: customer_stats
        entities: [customer]
        ttl: 2d
        schema:
          - {name: orders_7d, dtype: long}
          - {name: spend_30d, dtype: double, default: 0.0}
        source: {path: data/customer_stats.parquet, timestamp_field: event_timestamp}
        on_missing: default            # or reject (422 naming the feature)
    feature_services:
      - name: churn_v1
        features: [customer_stats:orders_7d, customer_stats:spend_30d]

or built in Python with the same classes. :func:`parse_repo` checks every reference
(a view's entities, a service's features) and says which entry is wrong and why.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelhost.entities import ColumnType
from modelhost.errors import InvalidInputError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}")
_TTL = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
ON_MISSING = ("reject", "default")


def parse_ttl(value: str | int | float | dt.timedelta | None) -> dt.timedelta | None:
    """``2d``, ``12h``, ``30m``, ``45s``, ``1d12h``, a number of seconds, or a
    timedelta; ``0``, ``none`` or None for no TTL (any age is fresh)."""
    if value is None or isinstance(value, dt.timedelta):
        return value if value else None
    if isinstance(value, bool):
        raise InvalidInputError("a TTL is a duration such as 2d, 12h or 30m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidInputError(f"a TTL cannot be negative, got {value}")
        return dt.timedelta(seconds=value) if value else None
    text = str(value).strip().lower()
    if text in ("", "0", "none", "never"):
        return None
    position, seconds = 0, 0.0
    for match in _TTL.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise InvalidInputError(f"a TTL is a duration such as 2d, 12h, 30m or 1d12h, got "
                                f"{str(value)[:40]!r}")
    return dt.timedelta(seconds=seconds) if seconds else None


@dataclass(frozen=True)
class Entity:
    name: str
    join_keys: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class FeatureField:
    name: str
    dtype: ColumnType
    default: Any = None  # used for a missing or stale value when the view says so


@dataclass(frozen=True)
class FileSource:
    """Parquet or CSV files (a path, a folder, a glob, an ``s3://`` URL) with the time
    each row's values became true, and optionally when the row was written (the later
    write wins between rows of one key and one time: a correction)."""

    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str | None = None


@dataclass(frozen=True)
class TableSource:
    """A table (``name`` or ``schema.name``) of the offline database: PostgreSQL or any
    database SQLAlchemy reaches (``MODELHOST_FEATURES_OFFLINE_DB``, by default the
    registry's), with the same time columns as a file source."""

    table: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str | None = None


Source = FileSource | TableSource


@dataclass(frozen=True)
class FeatureView:
    name: str
    entities: tuple[str, ...]
    schema: tuple[FeatureField, ...]
    source: Source
    ttl: dt.timedelta | None = None
    transformation: str | None = None  # "package.module:function", run on the frame
    on_missing: str = "reject"
    description: str = ""

    def field(self, name: str) -> FeatureField:
        for f in self.schema:
            if f.name == name:
                return f
        raise InvalidInputError(f"feature view {self.name!r} has no feature {name!r}; it "
                                f"has {', '.join(f.name for f in self.schema)}")


@dataclass(frozen=True)
class FeatureService:
    name: str
    features: tuple[str, ...]  # "view:feature", or "view" for all of a view's features
    description: str = ""


@dataclass(frozen=True)
class FeatureRepo:
    entities: Mapping[str, Entity] = field(default_factory=dict)
    views: Mapping[str, FeatureView] = field(default_factory=dict)
    services: Mapping[str, FeatureService] = field(default_factory=dict)

    def join_keys(self, view: FeatureView) -> tuple[str, ...]:
        return tuple(k for e in view.entities for k in self.entities[e].join_keys)

    def service_features(self, name: str) -> list[tuple[FeatureView, FeatureField]]:
        """The (view, feature) pairs of a service, in the order it names them."""
        service = self.services.get(name)
        if service is None:
            raise InvalidInputError(f"no feature service {name!r}; the repository has "
                                    f"{', '.join(sorted(self.services)) or 'none'}")
        found = []
        for ref in service.features:
            view_name, _, feature = ref.partition(":")
            view = self.views[view_name]
            found += [(view, view.field(feature))] if feature else [(view, f)
                                                                     for f in view.schema]
        return found


def parse_repo(data: Mapping[str, Any] | str) -> FeatureRepo:
    """A repository from its YAML text or the mapping it holds, checked as a whole."""
    if isinstance(data, str):
        import yaml

        try:
            data = yaml.safe_load(data) or {}
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"the feature definitions are not valid YAML: "
                                    f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise InvalidInputError("the feature definitions are a mapping with entities, "
                                "feature_views and feature_services")
    _known(data, "the feature definitions", {"entities", "feature_views",
                                              "feature_services"})
    entities = {e.name: e for e in _each(data, "entities", _entity)}
    views = {v.name: v for v in _each(data, "feature_views", _view)}
    services = {s.name: s for s in _each(data, "feature_services", _service)}
    repo = FeatureRepo(entities, views, services)
    check(repo)
    return repo


def check(repo: FeatureRepo) -> None:
    """Every reference resolves and no name is used twice."""
    for view in repo.views.values():
        for entity in view.entities:
            if entity not in repo.entities:
                raise InvalidInputError(f"feature view {view.name!r} names the entity "
                                        f"{entity!r}, which is not defined")
        keys = repo.join_keys(view)
        names = [f.name for f in view.schema]
        clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(keys)))
        if clash:
            raise InvalidInputError(f"feature view {view.name!r}: {', '.join(clash)} "
                                    "used twice (features and join keys are one namespace)")
    for service in repo.services.values():
        if not service.features:
            raise InvalidInputError(f"feature service {service.name!r} names no feature")
        for ref in service.features:
            view_name, _, feature = ref.partition(":")
            named = repo.views.get(view_name)
            if named is None:
                raise InvalidInputError(f"feature service {service.name!r} names the "
                                        f"feature view {view_name!r}, which is not defined")
            if feature:
                named.field(feature)


def _each(data: Mapping[str, Any], key: str, make: Any) -> list[Any]:
    entries = data.get(key) or []
    if not isinstance(entries, list):
        raise InvalidInputError(f"{key} is a list")
    made = [make(entry, f"{key}[{i}]") for i, entry in enumerate(entries)]
    names = [m.name for m in made]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"{key}: {', '.join(twice)} defined twice")
    return made


def _known(entry: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise InvalidInputError(f"{where} has unknown field(s) {', '.join(map(str, unknown))}; "
                                f"use {', '.join(sorted(allowed))}")


def _name(entry: Mapping[str, Any], where: str, key: str = "name") -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInputError(f"{where}.{key} must be a name of letters, digits and _ "
                                "(not starting with a digit)")
    return value


def _names(entry: Mapping[str, Any], where: str, key: str) -> tuple[str, ...]:
    values = entry.get(key)
    if not isinstance(values, list) or not values:
        raise InvalidInputError(f"{where}.{key} must be a non-empty list of names")
    return tuple(_name({key: v}, where, key) for v in values)


def _mapping(entry: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise InvalidInputError(f"{where} must be a mapping")
    return entry


def _entity(entry: Any, where: str) -> Entity:
    entry = _mapping(entry, where)
    _known(entry, where, {"name", "join_keys", "description"})
    return Entity(_name(entry, where), _names(entry, where, "join_keys"),
                  str(entry.get("description") or ""))


def _feature(entry: Any, where: str) -> FeatureField:
    entry = _mapping(entry, where)
    _known(entry, where, {"name", "dtype", "default"})
    try:
        dtype = ColumnType(str(entry.get("dtype", "")).lower())
    except ValueError:
        raise InvalidInputError(f"{where}.dtype must be one of "
                                f"{', '.join(t.value for t in ColumnType)}") from None
    default = entry.get("default")
    if default is not None and not isinstance(default, (bool, int, float, str)):
        raise InvalidInputError(f"{where}.default must be a number, a string or a boolean")
    return FeatureField(_name(entry, where), dtype, default)


def _view(entry: Any, where: str) -> FeatureView:
    entry = _mapping(entry, where)
    _known(entry, where, {"name", "entities", "schema", "source", "ttl", "transformation",
                          "on_missing", "description"})
    schema = entry.get("schema")
    if not isinstance(schema, list) or not schema:
        raise InvalidInputError(f"{where}.schema must be a non-empty list of features")
    source = _mapping(entry.get("source"), f"{where}.source")
    _known(source, f"{where}.source", {"path", "table", "timestamp_field",
                                        "created_timestamp_column"})
    if ("path" in source) == ("table" in source):
        raise InvalidInputError(f"{where}.source needs one of path (files) or table (a "
                                "table of the offline database)")
    if "path" in source and (not isinstance(source["path"], str) or not source["path"]):
        raise InvalidInputError(f"{where}.source.path must name the source's files")
    if "table" in source and (not isinstance(source["table"], str)
                              or not _TABLE.fullmatch(source["table"])):
        raise InvalidInputError(f"{where}.source.table must be a table name, or "
                                "schema.name")
    on_missing = str(entry.get("on_missing", "reject"))
    if on_missing not in ON_MISSING:
        raise InvalidInputError(f"{where}.on_missing must be reject or default")
    transformation = entry.get("transformation")
    if transformation is not None and (not isinstance(transformation, str)
                                       or ":" not in transformation):
        raise InvalidInputError(f"{where}.transformation must be an import path "
                                "package.module:function")
    try:
        ttl = parse_ttl(entry.get("ttl"))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}.ttl: {exc.message}") from None
    return FeatureView(
        name=_name(entry, where), entities=_names(entry, where, "entities"),
        schema=tuple(_feature(f, f"{where}.schema[{i}]") for i, f in enumerate(schema)),
        source=(FileSource if "path" in source else TableSource)(
            source["path"] if "path" in source else source["table"],
            _name(source, f"{where}.source", "timestamp_field")
            if "timestamp_field" in source else "event_timestamp",
            _name(source, f"{where}.source", "created_timestamp_column")
            if source.get("created_timestamp_column") else None),
        ttl=ttl, transformation=transformation, on_missing=on_missing,
        description=str(entry.get("description") or ""))


def _service(entry: Any, where: str) -> FeatureService:
    entry = _mapping(entry, where)
    _known(entry, where, {"name", "features", "description"})
    features = entry.get("features")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise InvalidInputError(f"{where}.features must be a list of view:feature names")
    return FeatureService(_name(entry, where), tuple(features),
                          str(entry.get("description") or ""))


def names_of(features: Sequence[tuple[FeatureView, FeatureField]], *,
             full: bool = False) -> list[str]:
    """The columns features get in a frame: ``feature``, or ``view__feature`` (Feast's
    full names) when ``full``. Raises InvalidInputError when two short names clash."""
    names = [f"{v.name}__{f.name}" if full else f.name for v, f in features]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"the features {', '.join(twice)} come from more than one "
                                "view: ask for full feature names (view__feature)")
    return names


def repo_to_dict(repo: FeatureRepo) -> dict[str, Any]:
    """The repository in the shape :func:`parse_repo` reads (TTLs in seconds)."""
    return {
        "entities": [{"name": e.name, "join_keys": list(e.join_keys),
                      "description": e.description} for e in repo.entities.values()],
        "feature_views": [{
            "name": v.name, "entities": list(v.entities),
            "schema": [{"name": f.name, "dtype": f.dtype.value, "default": f.default}
                       for f in v.schema],
            "source": {**({"path": v.source.path} if isinstance(v.source, FileSource)
                          else {"table": v.source.table}),
                       "timestamp_field": v.source.timestamp_field,
                       "created_timestamp_column": v.source.created_timestamp_column},
            "ttl": v.ttl.total_seconds() if v.ttl else None,
            "transformation": v.transformation, "on_missing": v.on_missing,
            "description": v.description} for v in repo.views.values()],
        "feature_services": [{"name": s.name, "features": list(s.features),
                              "description": s.description}
                             for s in repo.services.values()]}


def canonical(repo: FeatureRepo) -> tuple[str, str]:
    """(canonical JSON, its sha256): what a version stores, and how a change is told."""
    import hashlib
    import json

    text = json.dumps(repo_to_dict(repo), sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode()).hexdigest()
