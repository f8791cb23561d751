"""Data contracts: a YAML schema of a table, its inference from data, validation that
reports every violation with examples, and the comparison of two dataset versions.

A :class:`DataSchema` holds one :class:`ColumnRule` per column (type, nullability, range,
allowed values, uniqueness) and bounds on the row count. :func:`validate_frame` checks a
pandas DataFrame against it with pandera (lazily, so every failure is collected) and
returns a :class:`ValidationReport`. :func:`diff_datasets` compares the stored schema and
profile of two :class:`~modelhost.entities.DatasetVersion` s without reading their data.

pandas, pandera and PyYAML are imported inside the functions that need them, so that
``import modelhost`` stays fast.
"""

from __future__ import annotations

import bisect
import itertools
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelhost.entities import DatasetVersion
from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.tracking.datasets import (
    PERCENTILE_LEVELS,
    QUANTILE_LEVELS,
    Datasets,
    _data_files,
    _read,
    _schema,
)

COLUMN_TYPES = ("double", "long", "boolean", "string", "datetime")
SCHEMA_FORMAT = 1  # the ``version`` key of a schema file
MAX_EXAMPLES = 5

_NUMERIC = ("double", "long")
_RULE_KEYS = ("type", "nullable", "min", "max", "allowed", "unique")
_SCHEMA_KEYS = ("version", "min_rows", "max_rows", "columns")
# Signature column types (the stored schema of a dataset) -> rule types.
_RULE_TYPE = {"double": "double", "float": "double", "long": "long", "integer": "long",
              "boolean": "boolean", "string": "string", "datetime": "datetime"}
_TRUTH = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


# --- the schema ----------------------------------------------------------------------


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


# --- inference -----------------------------------------------------------------------


def infer_schema(frame: Any, *, categorical_max: int = 20) -> DataSchema:
    """A schema that ``frame`` satisfies, as a starting point to edit.

    Types come from the data (as in signatures; float/integer widen to double/long, and a
    column of no single type becomes string); a column is nullable when it holds a missing
    value; numeric columns get their observed min and max; a string column with at most
    ``categorical_max`` distinct values gets them as its allowed values. A column is unique
    when it has no duplicate and looks like an identifier: a long or string column named
    ``id`` or ``*_id``, or a string column whose values are all distinct. Rows: at least 1.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError("infer_schema needs a pandas DataFrame")
    if not _is_int(categorical_max) or categorical_max < 0:
        raise InvalidInputError(f"categorical_max must be a whole number >= 0, "
                                f"got {categorical_max!r}")
    _refuse_duplicate_columns(frame)
    types = _schema(frame)
    columns: dict[str, ColumnRule] = {}
    for position, name in enumerate(types):
        kind = _RULE_TYPE.get(types[name], "string")
        columns[name] = _infer_rule(frame.iloc[:, position], name, kind, categorical_max)
    return DataSchema(columns=columns, min_rows=1)


def _infer_rule(series: Any, name: str, kind: str, categorical_max: int) -> ColumnRule:
    series = _decategorize(series)
    values = series.dropna()
    rule = ColumnRule(type=kind, nullable=bool(series.isna().any()))
    if values.empty:
        return rule
    distinct = int(values.nunique())
    all_distinct = distinct == len(values)
    lowered = name.lower()
    id_like = lowered == "id" or lowered.endswith(("_id", "-id"))
    rule.unique = all_distinct and (
        (kind in ("long", "string") and id_like) or (kind == "string" and len(values) > 1))
    if kind in _NUMERIC and not rule.unique:
        low, high = values.min(), values.max()
        rule.min, rule.max = ((int(low), int(high)) if kind == "long"
                              else (float(low), float(high)))
    elif kind == "string" and not rule.unique and distinct <= categorical_max:
        rule.allowed = sorted(str(v) for v in values.astype(str).unique())
    return rule


def _decategorize(series: Any) -> Any:
    """A categorical column as its plain values (categories need not be ordered)."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.astype(series.dtype.categories.dtype)
    return series


def _refuse_duplicate_columns(frame: Any) -> None:
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInputError(f"the data repeats column names {repeated}")


# --- validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckFailure:
    """One violated check.

    ``column`` is None for checks on the whole table (``row_count``). ``count`` is the
    number of failing values (0 for checks on the table or on a column's presence);
    ``examples`` holds up to five ``(row, value)`` pairs, rows being the frame's index
    labels (0-based row numbers for data read from files).
    """

    column: str | None
    check: str
    count: int
    message: str
    examples: tuple[tuple[Any, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "check": self.check, "count": self.count,
                "message": self.message,
                "examples": [{"row": row, "value": value} for row, value in self.examples]}

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column is not None else "table"
        line = f"{where}: {self.check} failed"
        if self.count:
            line += f" for {self.count} row{'s' if self.count != 1 else ''}"
        line += f" ({self.message})"
        if self.examples:
            shown = ", ".join(f"row {row}: {value!r}" for row, value in self.examples)
            more = ", ..." if self.count > len(self.examples) else ""
            line += f"; e.g. {shown}{more}"
        return line


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of :func:`validate_frame`: every violated check, in schema order."""

    rows: int
    columns: int
    failures: tuple[CheckFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "columns": self.columns,
                "failures": [f.to_dict() for f in self.failures]}

    def summary(self) -> str:
        if self.ok:
            return (f"Valid: {self.rows} rows and {self.columns} columns pass every check "
                    "of the schema.")
        count = len(self.failures)
        lines = [f"Invalid: {count} check{'s' if count != 1 else ''} failed on "
                 f"{self.rows} rows and {self.columns} columns."]
        lines += [f"- {failure.describe()}" for failure in self.failures]
        return "\n".join(lines)


def validate_frame(frame: Any, schema: DataSchema) -> ValidationReport:
    """Check ``frame`` against ``schema`` and report every violation.

    Values are read leniently, the way CSV files need: a double column may hold integers,
    a long column whole floats, a boolean column ``true``/``false``/``1``/``0``, a datetime
    column date strings. A value that cannot be read as the column's type fails ``dtype``
    (and is then exempt from the column's other checks). The checks, by name: ``row_count``,
    ``column_present``, ``column_in_schema`` (an unexpected column), ``dtype``,
    ``not_nullable``, ``unique``, ``in_range(MIN, MAX)`` / ``min(MIN)`` / ``max(MAX)``,
    ``isin``.

    Raises:
        InvalidInputError: ``frame`` is not a DataFrame or repeats a column name.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError("validate_frame needs a pandas DataFrame")
    schema.check()
    _refuse_duplicate_columns(frame)
    labels = {str(c): c for c in frame.columns}
    rows = frame.index  # examples name rows by label; the checks run on positions
    frame = frame.reset_index(drop=True)
    failures = _row_count_failures(len(frame), schema)
    failures += [CheckFailure(name, "column_present", 0, "the column is missing")
                 for name in schema.columns if name not in labels]
    failures += [CheckFailure(name, "column_in_schema", 0, "the column is not in the schema")
                 for name in labels if name not in schema.columns]
    present = [name for name in schema.columns if name in labels]
    coerced: dict[str, Any] = {}
    unreadable: dict[str, Any] = {}
    for name in present:
        original = frame[labels[name]]
        coerced[name], bad = _coerce(original, schema.columns[name].type)
        if bad.any():
            unreadable[name] = bad
            failures.append(_failure(name, "dtype", original[bad],
                                     f"expected {schema.columns[name].type} values", rows))
    table = pd.DataFrame(coerced, index=frame.index)
    found = _pandera_failures(table, schema, present)
    for name in present:
        for check, message, cases in found.get(name, []):
            if check == "not_nullable" and name in unreadable:
                cases = cases[~cases.index.isin(unreadable[name][unreadable[name]].index)]
            if len(cases):
                failures.append(_failure(name, check, cases, message, rows))
    order = {name: i for i, name in enumerate(dict.fromkeys([*schema.columns, *labels]))}
    failures.sort(key=lambda f: -1 if f.column is None else order[f.column])
    return ValidationReport(rows=len(frame), columns=len(labels), failures=tuple(failures))


def _row_count_failures(rows: int, schema: DataSchema) -> list[CheckFailure]:
    if schema.min_rows is not None and rows < schema.min_rows:
        return [CheckFailure(None, "row_count", 0,
                             f"{rows} rows; the schema needs at least {schema.min_rows}")]
    if schema.max_rows is not None and rows > schema.max_rows:
        return [CheckFailure(None, "row_count", 0,
                             f"{rows} rows; the schema allows at most {schema.max_rows}")]
    return []


def _coerce(series: Any, kind: str) -> tuple[Any, Any]:
    """The values of ``series`` as ``kind`` and the mask of values that are not ``kind``."""
    import pandas as pd

    series = _decategorize(series)
    present = series.notna()
    types = pd.api.types
    if kind == "string":
        values = series if isinstance(series.dtype, pd.StringDtype) else series.astype("string")
        return values, present & False
    if kind in _NUMERIC:
        if types.is_bool_dtype(series.dtype) or types.is_datetime64_any_dtype(series.dtype):
            return pd.Series(math.nan, index=series.index), present
        numbers = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = present & numbers.isna()
        if kind == "double":
            return numbers, bad
        bad |= present & numbers.notna() & (numbers % 1 != 0)  # fractions and infinities
        return numbers.where(~bad).astype("Int64"), bad
    if kind == "boolean":
        if types.is_bool_dtype(series.dtype):
            return series.astype("boolean"), present & False
        flags = series.astype("string").str.strip().str.lower().map(_TRUTH)
        return flags.astype("boolean"), present & flags.isna()
    return _coerce_datetime(series, present)


def _coerce_datetime(series: Any, present: Any) -> tuple[Any, Any]:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series, present & False
    if pd.api.types.is_numeric_dtype(series.dtype):
        return pd.Series(pd.NaT, index=series.index), present
    try:
        stamps = pd.to_datetime(series, errors="coerce", format="mixed")
    except (ValueError, TypeError):  # e.g. mixed time zones: compare them in UTC
        stamps = pd.to_datetime(series, errors="coerce", format="mixed", utc=True)
    return stamps, present & stamps.isna()


def _pandera_failures(table: Any, schema: DataSchema,
                      present: list[str]) -> dict[str, list[tuple[str, str, Any]]]:
    """Run the value checks with pandera: column -> [(check, message, failing values)]."""
    import pandera.pandas as pa

    columns: dict[str, Any] = {}
    names: dict[str, list[tuple[str, str]]] = {}
    for name in present:
        rule = schema.columns[name]
        checks, names[name] = _value_checks(rule)
        columns[name] = pa.Column(None, checks=checks, nullable=rule.nullable,
                                  unique=rule.unique, report_duplicates="all", name=name)
    try:
        pa.DataFrameSchema(columns).validate(table, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return {}
    found: dict[str, list[tuple[str, str, Any]]] = {}
    for (name, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        numbers = group["check_number"].dropna()
        if check == "not_nullable":
            label, message = "not_nullable", "missing values are not allowed"
        elif check == "field_uniqueness":
            label, message = "unique", "duplicate values"
        elif len(numbers):
            label, message = names[name][int(numbers.iloc[0])]
        else:  # pandera found something it could not pin on one check
            label, message = str(check), "pandera check failed"
        failing = group.set_index("index")["failure_case"]
        found.setdefault(str(name), []).append((label, message, failing))
    order = ("not_nullable", "unique")
    for items in found.values():
        items.sort(key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    return found


def _value_checks(rule: ColumnRule) -> tuple[list[Any], list[tuple[str, str]]]:
    import pandera.pandas as pa

    checks: list[Any] = []
    names: list[tuple[str, str]] = []
    low, high = rule.min, rule.max
    if low is not None and high is not None:
        checks.append(pa.Check.in_range(low, high))
        lo, hi = _number(low), _number(high)
        names.append((f"in_range({lo}, {hi})", f"values outside [{lo}, {hi}]"))
    elif low is not None:
        checks.append(pa.Check.ge(low))
        names.append((f"min({_number(low)})", f"values below {_number(low)}"))
    elif high is not None:
        checks.append(pa.Check.le(high))
        names.append((f"max({_number(high)})", f"values above {_number(high)}"))
    if rule.allowed is not None:
        checks.append(pa.Check.isin(rule.allowed))
        shown = ", ".join(str(v) for v in rule.allowed[:10])
        more = ", ..." if len(rule.allowed) > 10 else ""
        names.append(("isin", f"values not among the allowed {shown}{more}"))
    return checks, names


def _number(value: float) -> str:
    """A bound as short as it can be shown without changing its value."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _failure(column: str, check: str, failing: Any, message: str, rows: Any) -> CheckFailure:
    """A failure from the failing values of one check (a Series indexed by position)."""
    examples = tuple((_plain(rows[position]), _plain(value))
                     for position, value in failing.head(MAX_EXAMPLES).items())
    return CheckFailure(column, check, len(failing), message, examples)


def _plain(value: Any) -> Any:
    """A JSON-ready Python value: NaN and NaT are None, numpy scalars Python ones."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if hasattr(value, "isoformat"):
        return None if str(value) == "NaT" else value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else (None if math.isnan(value) else str(value))
    if isinstance(value, (int, bool)):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


# --- reading the data ----------------------------------------------------------------


def read_frame(path: str | Path) -> Any:
    """The table in a CSV/Parquet file or a folder of such files, as one DataFrame.

    Raises:
        FileNotFoundInputError: nothing exists at ``path``.
        InvalidInputError: the file is no CSV/Parquet data.
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundInputError(str(path))
    fmt, files = _data_files(source)
    return _read(files, fmt)


def read_version(datasets: Datasets, dv: DatasetVersion) -> Any:
    """The data of a registered dataset version (verified against its digest)."""
    with tempfile.TemporaryDirectory(prefix="modelhost-data-") as tmp:
        folder = datasets.materialize(dv, Path(tmp) / "data")
        fmt, files = _data_files(folder)
        return _read(files, fmt)


# --- comparing versions --------------------------------------------------------------

# A column counts as shifted past any of these (PSI: 0.1 moderate, 0.25 large shift).
PSI_THRESHOLD = 0.1
MEAN_SHIFT_THRESHOLD = 0.2  # in standard deviations of the first version
NULL_RATE_THRESHOLD = 0.01  # absolute change of the share of missing values
_PSI_FLOOR = 1e-4  # share given to an empty bin, so that PSI stays finite


@dataclass(frozen=True)
class ColumnDiff:
    """How one column present in both versions changed.

    ``mean_shift`` is ``(mean_b - mean_a) / std_a``; ``psi`` the population stability
    index of ``b`` against ``a`` (from the stored percentiles of numbers, or the stored value
    counts of categories); ``frequency_changes`` maps the values whose share moved most to
    ``(share_a, share_b)``. ``reasons`` says why the column counts as shifted (empty when
    it does not).
    """

    name: str
    kind: str  # numeric, categorical, or "a -> b" when the kind itself changed
    null_rate_a: float | None
    null_rate_b: float | None
    mean_a: float | None = None
    mean_b: float | None = None
    std_a: float | None = None
    std_b: float | None = None
    mean_shift: float | None = None
    std_ratio: float | None = None
    psi: float | None = None
    new_values: tuple[str, ...] = ()
    vanished_values: tuple[str, ...] = ()
    frequency_changes: dict[str, tuple[float, float]] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def shifted(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.name, "kind": self.kind, "shifted": self.shifted,
                "reasons": list(self.reasons),
                "null_rate": {"a": self.null_rate_a, "b": self.null_rate_b},
                "mean": {"a": self.mean_a, "b": self.mean_b},
                "std": {"a": self.std_a, "b": self.std_b},
                "mean_shift": self.mean_shift, "std_ratio": self.std_ratio, "psi": self.psi,
                "new_values": list(self.new_values),
                "vanished_values": list(self.vanished_values),
                "frequency_changes": {k: {"a": a, "b": b}
                                      for k, (a, b) in self.frequency_changes.items()}}


@dataclass(frozen=True)
class DatasetDiff:
    """What changed from dataset version ``a`` to ``b`` (refs ``name@version``).

    ``changed`` is True when a column was added, removed or retyped, the row count moved,
    or a column shifted (see :class:`ColumnDiff`); ``identical`` when both have the same
    content digest.
    """

    a: str
    b: str
    identical: bool
    rows_a: int
    rows_b: int
    added_columns: dict[str, str] = field(default_factory=dict)
    removed_columns: dict[str, str] = field(default_factory=dict)
    retyped_columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    columns: tuple[ColumnDiff, ...] = ()

    @property
    def shifted_columns(self) -> list[ColumnDiff]:
        return [c for c in self.columns if c.shifted]

    @property
    def changed(self) -> bool:
        return bool(self.added_columns or self.removed_columns or self.retyped_columns
                    or self.rows_a != self.rows_b or self.shifted_columns)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "changed": self.changed, "identical": self.identical,
                "rows": {"a": self.rows_a, "b": self.rows_b},
                "added_columns": dict(self.added_columns),
                "removed_columns": dict(self.removed_columns),
                "retyped_columns": {k: {"a": a, "b": b}
                                    for k, (a, b) in self.retyped_columns.items()},
                "columns": [c.to_dict() for c in self.columns]}

    def summary(self) -> str:
        if not self.changed:
            same = "identical content" if self.identical else "same schema and distributions"
            return f"{self.a} -> {self.b}: no change ({same}, {self.rows_b} rows)."
        lines = [f"{self.a} -> {self.b}: changed.", f"rows: {self.rows_a} -> {self.rows_b}"
                 + (f" ({_signed(self.rows_b - self.rows_a)})"
                    if self.rows_a != self.rows_b else "")]
        if self.added_columns:
            lines.append("added columns: " + ", ".join(
                f"{k} ({t})" for k, t in self.added_columns.items()))
        if self.removed_columns:
            lines.append("removed columns: " + ", ".join(
                f"{k} ({t})" for k, t in self.removed_columns.items()))
        if self.retyped_columns:
            lines.append("retyped columns: " + ", ".join(
                f"{k} ({a} -> {b})" for k, (a, b) in self.retyped_columns.items()))
        shifted = self.shifted_columns
        if shifted:
            lines.append("distribution shifts:")
            lines += [f"- {c.name}: {'; '.join(c.reasons)}" for c in shifted]
        steady = len(self.columns) - len(shifted)
        if steady:
            other = " other" if shifted else ""
            lines.append(f"no shift in {steady}{other} column{'s' if steady != 1 else ''}")
        return "\n".join(lines)


def diff_datasets(a: DatasetVersion, b: DatasetVersion) -> DatasetDiff:
    """Compare two dataset versions by their stored schema and profile (no data read)."""
    added = {k: t for k, t in b.schema.items() if k not in a.schema}
    removed = {k: t for k, t in a.schema.items() if k not in b.schema}
    retyped = {k: (t, b.schema[k]) for k, t in a.schema.items()
               if k in b.schema and b.schema[k] != t}
    stats_a, stats_b = _profile_columns(a), _profile_columns(b)
    columns = tuple(_diff_column(name, stats_a.get(name, {}), stats_b.get(name, {}))
                    for name in b.schema if name in a.schema)
    return DatasetDiff(a=a.ref, b=b.ref, identical=a.digest == b.digest,
                       rows_a=a.n_rows, rows_b=b.n_rows, added_columns=added,
                       removed_columns=removed, retyped_columns=retyped, columns=columns)


def _profile_columns(dv: DatasetVersion) -> dict[str, Mapping[str, Any]]:
    """Each column's profile, with the number of its non-missing values as ``count``."""
    columns = dv.profile.get("columns", {})
    if not isinstance(columns, Mapping):
        return {}
    return {str(name): {**stats, "count": dv.n_rows - int(_float(stats.get("nulls")) or 0)}
            for name, stats in columns.items() if isinstance(stats, Mapping)}


def _diff_column(name: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> ColumnDiff:
    kind_a, kind_b = a.get("kind"), b.get("kind")
    null_a, null_b = _float(a.get("null_rate")), _float(b.get("null_rate"))
    reasons: list[str] = []
    if null_a is not None and null_b is not None \
            and abs(null_b - null_a) >= NULL_RATE_THRESHOLD:
        reasons.append(f"null rate {null_a:.1%} -> {null_b:.1%}")
    base = ColumnDiff(name=name, kind=str(kind_a) if kind_a == kind_b else f"{kind_a} -> "
                      f"{kind_b}", null_rate_a=null_a, null_rate_b=null_b)
    if kind_a == kind_b == "numeric":
        return _diff_numeric(base, a, b, reasons)
    if kind_a == kind_b == "categorical":
        return _diff_categorical(base, a, b, reasons)
    return replace(base, reasons=tuple(reasons))


def _diff_numeric(base: ColumnDiff, a: Mapping[str, Any], b: Mapping[str, Any],
                  reasons: list[str]) -> ColumnDiff:
    mean_a, mean_b = _float(a.get("mean")), _float(b.get("mean"))
    std_a, std_b = _float(a.get("std")), _float(b.get("std"))
    shift = ratio = None
    if mean_a is not None and mean_b is not None and std_a is not None:
        shift = (mean_b - mean_a) / std_a if std_a > 0 else (0.0 if mean_a == mean_b else None)
    if std_a and std_b is not None:
        ratio = std_b / std_a
    points_a, points_b = _quantile_points(a), _quantile_points(b)
    psi = _psi_numeric(points_a, points_b) if points_a and points_b else None
    if psi is not None and psi >= PSI_THRESHOLD:
        reasons.append(f"PSI {psi:.2f}")
    if shift is not None and abs(shift) >= MEAN_SHIFT_THRESHOLD:
        reasons.append(f"mean {mean_a:.4g} -> {mean_b:.4g} ({shift:+.2f} sd)")
    elif shift is None and mean_a is not None and mean_b is not None and mean_a != mean_b:
        reasons.append(f"mean {mean_a:.4g} -> {mean_b:.4g} (constant in the first version)")
    return replace(base, mean_a=mean_a, mean_b=mean_b, std_a=std_a, std_b=std_b,
                    mean_shift=_round(shift), std_ratio=_round(ratio), psi=_round(psi),
                    reasons=tuple(reasons))


def _diff_categorical(base: ColumnDiff, a: Mapping[str, Any], b: Mapping[str, Any],
                      reasons: list[str]) -> ColumnDiff:
    top_a, top_b = _counts(a.get("top")), _counts(b.get("top"))
    total_a, total_b = int(a.get("count", 0)), int(b.get("count", 0))
    # A profile keeps the 20 most frequent values: "new" and "vanished" are only sure
    # when the other side's list is complete.
    complete_a = int(a.get("unique", len(top_a))) <= len(top_a)
    complete_b = int(b.get("unique", len(top_b))) <= len(top_b)
    new = tuple(v for v in top_b if v not in top_a) if complete_a else ()
    vanished = tuple(v for v in top_a if v not in top_b) if complete_b else ()
    share_a = {v: c / total_a for v, c in top_a.items()} if total_a else {}
    share_b = {v: c / total_b for v, c in top_b.items()} if total_b else {}
    keys = list(dict.fromkeys([*share_a, *share_b]))
    moves = sorted(keys, key=lambda v: -abs(share_b.get(v, 0.0) - share_a.get(v, 0.0)))
    changes = {v: (round(share_a.get(v, 0.0), 6), round(share_b.get(v, 0.0), 6))
               for v in moves[:5] if share_a.get(v, 0.0) != share_b.get(v, 0.0)}
    psi = None
    if share_a and share_b:
        psi = _psi([*(share_a.get(v, 0.0) for v in keys), 1 - sum(share_a.values())],
                   [*(share_b.get(v, 0.0) for v in keys), 1 - sum(share_b.values())])
    if new:
        reasons.append("new values: " + _listing(new))
    if vanished:
        reasons.append("vanished values: " + _listing(vanished))
    if psi is not None and psi >= PSI_THRESHOLD:
        reasons.append(f"PSI {psi:.2f}")
    return replace(base, psi=_round(psi), new_values=new, vanished_values=vanished,
                    frequency_changes=changes, reasons=tuple(reasons))


def _quantile_points(stats: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """(values, levels) of the finest quantiles a profile holds."""
    for key, levels in (("percentiles", PERCENTILE_LEVELS), ("quantiles", QUANTILE_LEVELS)):
        values = stats.get(key)
        if isinstance(values, list) and len(values) == len(levels) \
                and all(_float(v) is not None for v in values):
            return [float(v) for v in values], list(levels)
    return None


def _psi_numeric(a: tuple[list[float], list[float]], b: tuple[list[float], list[float]]) -> float:
    """PSI over the bins cut by ``a``'s quantiles, plus one bin below and one above.

    Each side's share of a bin comes from its own quantiles, read as a piecewise-linear
    distribution function.
    """
    edges = sorted(set(a[0]))
    return _psi(_bin_shares(a, edges), _bin_shares(b, edges))


def _bin_shares(points: tuple[list[float], list[float]], edges: list[float]) -> list[float]:
    cdf = [_cdf(points, x) for x in edges]
    return [cdf[0], *(hi - lo for lo, hi in itertools.pairwise(cdf)), 1 - cdf[-1]]


def _cdf(points: tuple[list[float], list[float]], x: float) -> float:
    """The share of values <= x, interpolated between stored quantiles."""
    values, levels = points
    if x < values[0]:
        return 0.0
    if x >= values[-1]:
        return 1.0
    i = bisect.bisect_right(values, x) - 1  # values[i] <= x < values[i + 1]
    span = values[i + 1] - values[i]
    return levels[i] + (levels[i + 1] - levels[i]) * (x - values[i]) / span


def _psi(shares_a: list[float], shares_b: list[float]) -> float:
    total = 0.0
    for pa, pb in zip(shares_a, shares_b, strict=True):
        pa, pb = max(pa, _PSI_FLOOR), max(pb, _PSI_FLOOR)
        total += (pb - pa) * math.log(pb / pa)
    return total


def _counts(top: object) -> dict[str, int]:
    if not isinstance(top, Mapping):
        return {}
    return {str(k): int(v) for k, v in top.items() if isinstance(v, (int, float))}


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _signed(delta: int) -> str:
    return f"{delta:+d}"


def _listing(values: tuple[str, ...]) -> str:
    return ", ".join(values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")


__all__ = [
    "COLUMN_TYPES",
    "CheckFailure",
    "ColumnDiff",
    "ColumnRule",
    "DataSchema",
    "DatasetDiff",
    "ValidationReport",
    "diff_datasets",
    "infer_schema",
    "read_frame",
    "read_version",
    "validate_frame",
]
