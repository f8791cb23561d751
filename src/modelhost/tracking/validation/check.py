"""Validation of a DataFrame against a :class:`DataSchema`: :func:`validate_frame` reads the
values leniently as their rule types, runs the value checks with pandera (lazily, so every
failure is collected) and returns a :class:`ValidationReport` of :class:`CheckFailure` s.

pandas and pandera are imported inside the functions that need them, so that
``import modelhost`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.tracking.validation.frames import _decategorize, _refuse_duplicate_columns
from modelhost.tracking.validation.schema import _NUMERIC, ColumnRule, DataSchema

MAX_EXAMPLES = 5
_TRUTH = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


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


__all__ = ["MAX_EXAMPLES", "CheckFailure", "ValidationReport", "validate_frame"]
