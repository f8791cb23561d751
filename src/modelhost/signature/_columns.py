"""Column validation: a whole column of request values to one array of its signature type.

Each column is scanned once for the Python types of its values and, when the scan is clean,
converted by numpy in one call; only a column that holds a null or a problem takes the
per-value path that names rows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelhost.entities import ColumnSpec, ColumnType
from modelhost.signature._problems import (
    _BOOLS,
    _FLOATS,
    _INTS,
    _MISSING,
    _label,
    _Problems,
)

_T = ColumnType
# pandas' missing-value singletons (this module imports pandas anyway; _problems does not,
# so that comparing signatures needs no pandas).
_NAT: Any = pd.NaT
_NA: Any = pd.NA


class _RejectError(Exception):
    """A value that does not fit its column; ``got`` names what it was. Never escapes."""

    def __init__(self, got: str) -> None:
        self.got = got


_INT_BOUNDS = {_T.LONG: (-(2**63), 2**63 - 1), _T.INTEGER: (-(2**31), 2**31 - 1)}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBERS = frozenset({float, int})
_NUMBERS_OR_NULL = frozenset({float, int, type(None)})


# --- columns: one value -> its converted form -----------------------------------------


def _coerce_number(value: Any, kind: ColumnType) -> Any:
    if isinstance(value, _BOOLS) or not isinstance(value, (*_INTS, *_FLOATS)):
        raise _RejectError(_label(value))
    if kind is _T.DOUBLE or kind is _T.FLOAT:
        try:
            number = float(value)
        except OverflowError:
            raise _RejectError("long out of range") from None
        if kind is _T.FLOAT and abs(number) > _FLOAT32_MAX:
            raise _RejectError("double out of float range")
        return number
    if isinstance(value, _FLOATS) and not float(value).is_integer():
        raise _RejectError("non-integral double")
    integer = int(value)
    low, high = _INT_BOUNDS[kind]
    if not low <= integer <= high:
        raise _RejectError(f"{_label(value)} out of range")
    return integer


def _coerce_boolean(value: Any, kind: ColumnType) -> Any:
    if isinstance(value, _BOOLS):
        return bool(value)
    raise _RejectError(_label(value))


def _coerce_string(value: Any, kind: ColumnType) -> Any:
    if isinstance(value, str):
        return value
    raise _RejectError(_label(value))


def _coerce_datetime(value: Any, kind: ColumnType) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise _RejectError(_label(value))
    try:
        # Python 3.10's fromisoformat does not know the "Z" suffix.
        return dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise _RejectError("non-ISO-8601 string") from None


_COERCE: dict[ColumnType, Callable[[Any, ColumnType], Any]] = {
    _T.DOUBLE: _coerce_number, _T.FLOAT: _coerce_number, _T.LONG: _coerce_number,
    _T.INTEGER: _coerce_number, _T.BOOLEAN: _coerce_boolean, _T.STRING: _coerce_string,
    _T.DATETIME: _coerce_datetime,
}


# --- columns: a whole column -> one array ---------------------------------------------


def _convert_column(values: Sequence[Any], spec: ColumnSpec, problems: _Problems) -> Any:
    try:
        fast = _fast_column(values, spec)
    except (OverflowError, ValueError):
        fast = None
    return fast if fast is not None else _slow_column(values, spec, problems)


def _fast_column(values: Sequence[Any], spec: ColumnSpec) -> Any:
    """The column converted by numpy in one call, or None when it needs a closer look."""
    kind = spec.type
    types = set(map(type, values))
    if kind is _T.DOUBLE or kind is _T.FLOAT:
        if not (types <= _NUMBERS or (spec.nullable and types <= _NUMBERS_OR_NULL)):
            return None
        array = np.array(values, dtype=np.float64)
        if not np.isfinite(array).all() and (not spec.nullable or np.isinf(array).any()):
            return None
        if kind is _T.FLOAT:
            if (np.abs(array) > _FLOAT32_MAX).any():
                return None
            return array.astype(np.float32)
        return array
    if kind is _T.LONG or kind is _T.INTEGER:
        if types != {int}:
            return None
        array = np.array(values, dtype=np.int64)
        if kind is _T.INTEGER:
            low, high = _INT_BOUNDS[kind]
            if array.min() < low or array.max() > high:
                return None
            return array.astype(np.int32)
        return array
    if kind is _T.BOOLEAN and types == {bool}:
        return np.array(values, dtype=np.bool_)
    if kind is _T.STRING and types == {str}:
        return _object_series(values)
    if kind is _T.DATETIME and types == {str}:
        return _build_column(kind, list(map(dt.datetime.fromisoformat, values)), False)
    return None


def _slow_column(values: Sequence[Any], spec: ColumnSpec, problems: _Problems) -> Any:
    """Check value by value, naming every bad row; the converted column if all is well."""
    coerce = _COERCE[spec.type]
    kind = spec.type
    where = f"column {spec.name!r}"
    expected = kind.value
    before = problems.total
    out: list[Any] = []
    missing: list[int] = []
    has_null = False
    for row, value in enumerate(values):
        if (value is None or value is _MISSING or value is _NAT or value is _NA
                or (isinstance(value, _FLOATS) and value != value)):
            has_null = True
            out.append(None)
            if value is _MISSING:
                if spec.required:
                    missing.append(row)
            elif not spec.nullable:
                problems.add(where, spec.name, row, expected, "null", "null value not allowed")
            continue
        if isinstance(value, _FLOATS) and math.isinf(value):
            problems.add(where, spec.name, row, expected, "-inf" if value < 0 else "inf",
                         "non-finite value")
            out.append(None)
            continue
        try:
            out.append(coerce(value, kind))
        except _RejectError as exc:
            problems.add(where, spec.name, row, expected, exc.got,
                         f"expected {expected}, got {exc.got}")
            out.append(None)
    if missing:
        _add_missing(problems, spec, missing, len(values))
    if problems.total > before:
        return None
    return _build_column(kind, out, has_null)


def _add_missing(problems: _Problems, spec: ColumnSpec, rows: list[int], n_rows: int) -> None:
    where = f"column {spec.name!r}"
    if len(rows) == n_rows:
        problems.add(where, spec.name, None, spec.type.value, "missing",
                     "required column is missing")
        return
    shown = ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10
                                              else "")
    what = f"required column is missing at row{'s' if len(rows) > 1 else ''} {shown}"
    # The message already names the rows; "row" keeps the first for machine readers.
    problems.add(where, spec.name, rows[0], spec.type.value, "missing", what, say_row=False,
                 rows=rows[:problems.limit])


def _build_column(kind: ColumnType, out: list[Any], has_null: bool) -> Any:
    if kind is _T.DOUBLE:
        return np.array(out, dtype=np.float64)
    if kind is _T.FLOAT:
        return np.array(out, dtype=np.float32)
    if kind is _T.LONG or kind is _T.INTEGER:
        if has_null:
            return np.array(out, dtype=np.float64)
        return np.array(out, dtype=np.int64 if kind is _T.LONG else np.int32)
    if kind is _T.BOOLEAN:
        return _object_series(out) if has_null else np.array(out, dtype=np.bool_)
    if kind is _T.STRING:
        return _object_series(out)
    aware = any(v is not None and v.utcoffset() is not None for v in out)
    if aware:
        # Mixed offsets cannot share one column: aware values go to UTC, naive ones are
        # taken to be UTC already.
        out = [v if v is None or v.utcoffset() is None
               else v.astimezone(dt.timezone.utc).replace(tzinfo=None) for v in out]
    # numpy converts datetime objects in Python, pandas in C at a higher cost per call.
    naive = (np.array(out, dtype="datetime64[us]") if len(out) < 64
             else pd.array(out, dtype="datetime64[us]"))
    return pd.Series(naive, copy=False).dt.tz_localize("UTC") if aware else naive


def _object_series(values: Sequence[Any]) -> Any:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    # An explicit object dtype stops pandas from turning strings into its "str" dtype.
    return pd.Series(array, dtype=object, copy=False)
