"""The data schema: :class:`ColumnRule` per column, :class:`DataSchema` for the table, and
their YAML form (``to_yaml``/``from_yaml``, ``save``/``load``), with every rule checked.

PyYAML is imported inside the methods that need it, so that ``import modelhost`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost.errors import FileNotFoundInputError, InvalidInputError

COLUMN_TYPES = ("double", "long", "boolean", "string", "datetime")
SCHEMA_FORMAT = 1  # the ``version`` key of a schema file

_NUMERIC = ("double", "long")
_RULE_KEYS = ("type", "nullable", "min", "max", "allowed", "unique")
_SCHEMA_KEYS = ("version", "min_rows", "max_rows", "columns")


@dataclass
class ColumnRule:
    """What the values of one column must satisfy.

    ``type`` is one of :data:`COLUMN_TYPES`. ``min``/``max`` (inclusive) apply to double and
    long columns, ``allowed`` (the categories) to string and long columns. Missing values
    are exempt from every check but ``nullable``; ``unique`` ignores them too.
    """

    type: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    unique: bool = False


@dataclass
class DataSchema:
    """The contract of a table: one rule per column (in order) and row-count bounds.

    Raises:
        InvalidInputError: a rule is inconsistent (unknown type, min above max, ...),
            naming the column and the key.
    """

    columns: dict[str, ColumnRule]
    min_rows: int | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Check every rule again (after editing the schema in place)."""
        if not isinstance(self.columns, dict) or not self.columns:
            raise InvalidInputError("the schema has no columns; 'columns' maps each column "
                                    "name to its rules, e.g. 'age: {type: double}'")
        for name, rule in self.columns.items():
            if not isinstance(name, str):
                raise InvalidInputError(f"schema column name {name!r} is not a string; "
                                        f"quote it: '{name}'")
            if not isinstance(rule, ColumnRule):
                raise InvalidInputError(f"schema column {name!r}: expected a ColumnRule")
            _check_rule(name, rule)
        for key in ("min_rows", "max_rows"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 0):
                raise InvalidInputError(f"schema key {key!r} must be a whole number >= 0 or "
                                        f"null, got {value!r}")
        if self.min_rows is not None and self.max_rows is not None \
                and self.min_rows > self.max_rows:
            raise InvalidInputError(f"schema key 'min_rows' ({self.min_rows}) is above "
                                    f"'max_rows' ({self.max_rows})")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"version": SCHEMA_FORMAT, "min_rows": self.min_rows}
        if self.max_rows is not None:
            body["max_rows"] = self.max_rows
        body["columns"] = {name: _rule_to_dict(rule) for name, rule in self.columns.items()}
        return body

    def to_yaml(self) -> str:
        import yaml

        self.check()
        header = ("# modelhost data schema: one rule per column. Keys: type (double, long, "
                  "boolean, string,\n# datetime), nullable, min, max, allowed, unique; "
                  "min_rows and max_rows bound the row count.\n")
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: object) -> DataSchema:
        """Build a schema from parsed YAML/JSON, refusing unknown keys and bad values."""
        if not isinstance(data, dict):
            raise InvalidInputError("the schema must be a mapping with a 'columns' key")
        _refuse_unknown(data, _SCHEMA_KEYS, "schema key")
        version = data.get("version", SCHEMA_FORMAT)
        if version != SCHEMA_FORMAT:
            raise InvalidInputError(f"schema key 'version' must be {SCHEMA_FORMAT}, "
                                    f"got {version!r}")
        columns = data.get("columns")
        if not isinstance(columns, dict) or not columns:
            raise InvalidInputError("the schema has no columns; 'columns' maps each column "
                                    "name to its rules, e.g. 'age: {type: double}'")
        return cls(columns={name: _rule_from_dict(name, raw) for name, raw in columns.items()},
                   min_rows=data.get("min_rows"), max_rows=data.get("max_rows"))

    @classmethod
    def from_yaml(cls, text: str) -> DataSchema:
        """Parse a schema written by :meth:`to_yaml` (or by hand).

        Raises:
            InvalidInputError: the text is not YAML, or has an unknown key or a bad value.
        """
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise InvalidInputError(f"the schema is not valid YAML: {problem}{where}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(self.to_yaml(), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> DataSchema:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundInputError(str(path))
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("the schema file is not UTF-8 text") from None
        return cls.from_yaml(text)


def _rule_from_dict(name: object, raw: object) -> ColumnRule:
    if not isinstance(name, str):
        raise InvalidInputError(f"schema column name {name!r} is not a string; "
                                f"quote it: '{name}'")
    if not isinstance(raw, dict):
        raise InvalidInputError(f"schema column {name!r}: expected a mapping of rules "
                                "such as 'type: double', got " + repr(raw)[:40])
    _refuse_unknown(raw, _RULE_KEYS, f"key of schema column {name!r}:")
    if "type" not in raw:
        raise InvalidInputError(f"schema column {name!r}: key 'type' is required "
                                f"(one of {', '.join(COLUMN_TYPES)})")
    return ColumnRule(type=raw["type"], nullable=raw.get("nullable", False),
                      min=raw.get("min"), max=raw.get("max"), allowed=raw.get("allowed"),
                      unique=raw.get("unique", False))


def _refuse_unknown(data: Mapping[Any, Any], known: tuple[str, ...], what: str) -> None:
    unknown = [k for k in data if k not in known]
    if unknown:
        raise InvalidInputError(f"unknown {what} {unknown[0]!r}; "
                                f"known keys: {', '.join(sorted(known))}")


def _check_rule(name: str, rule: ColumnRule) -> None:
    where = f"schema column {name!r}"
    if rule.type not in COLUMN_TYPES:
        raise InvalidInputError(f"{where}: key 'type' must be one of "
                                f"{', '.join(COLUMN_TYPES)}, got {rule.type!r}")
    for key in ("nullable", "unique"):
        if not isinstance(getattr(rule, key), bool):
            raise InvalidInputError(f"{where}: key {key!r} must be true or false, "
                                    f"got {getattr(rule, key)!r}")
    for key in ("min", "max"):
        value = getattr(rule, key)
        if value is None:
            continue
        if rule.type not in _NUMERIC:
            raise InvalidInputError(f"{where}: key {key!r} applies to double and long "
                                    f"columns, not {rule.type}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise InvalidInputError(f"{where}: key {key!r} must be a finite number or "
                                    f"null, got {value!r}")
    if rule.min is not None and rule.max is not None and rule.min > rule.max:
        raise InvalidInputError(f"{where}: 'min' ({rule.min}) is above 'max' ({rule.max})")
    if rule.allowed is not None:
        _check_allowed(where, rule)


def _check_allowed(where: str, rule: ColumnRule) -> None:
    if rule.type not in ("string", "long"):
        raise InvalidInputError(f"{where}: key 'allowed' applies to string and long "
                                f"columns, not {rule.type}")
    if not isinstance(rule.allowed, list) or not rule.allowed:
        raise InvalidInputError(f"{where}: key 'allowed' must be a non-empty list of "
                                f"values, got {rule.allowed!r}")
    wanted = str if rule.type == "string" else int
    for value in rule.allowed:
        if isinstance(value, bool) or not isinstance(value, wanted):
            hint = " (quote it)" if rule.type == "string" else ""
            raise InvalidInputError(f"{where}: key 'allowed' holds {value!r}, which is not "
                                    f"a {rule.type} value{hint}")
    if len(set(rule.allowed)) != len(rule.allowed):
        raise InvalidInputError(f"{where}: key 'allowed' repeats a value")


def _rule_to_dict(rule: ColumnRule) -> dict[str, Any]:
    body: dict[str, Any] = {"type": rule.type, "nullable": rule.nullable}
    for key in ("min", "max"):
        value = getattr(rule, key)
        if value is not None:
            whole = rule.type == "long" and float(value).is_integer()
            body[key] = int(value) if whole else float(value)
    if rule.allowed is not None:
        body["allowed"] = list(rule.allowed)
    if rule.unique:
        body["unique"] = True
    return body


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["COLUMN_TYPES", "SCHEMA_FORMAT", "ColumnRule", "DataSchema"]
