"""Signatures: infer them from data, compare two of them, enforce one on every request.

A signature is the input/output contract of a model version (PRODUCT.md §1). This module
infers it from training data, decides the semver bump between two versions, and turns a
request payload into the model's input while reporting every problem in the shape of
PRODUCT.md §3.6.

The validator sits on the prediction hot path. Each column is scanned once for the Python
types of its values and, when the scan is clean, converted by numpy in one call; only a
column that holds a null or a problem takes the per-value path that names rows.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelhost.entities import Bump, ColumnSpec, ColumnType, Signature, Spec, TensorSpec
from modelhost.errors import InvalidInputError, SignatureViolationError

__all__ = [
    "InputValidator",
    "compare_signatures",
    "example_from_jsonable",
    "infer_signature",
    "to_jsonable",
]

_Array = npt.NDArray[Any]

# --- inference ------------------------------------------------------------------------

_T = ColumnType
_TYPE_BY_DTYPE: dict[str, ColumnType] = {
    "float64": _T.DOUBLE, "Float64": _T.DOUBLE, "float32": _T.FLOAT, "Float32": _T.FLOAT,
    "float16": _T.FLOAT, "int64": _T.LONG, "Int64": _T.LONG, "bool": _T.BOOLEAN,
    "boolean": _T.BOOLEAN,
    # uint32 does not fit the int32 that "integer" promises, so it widens to long.
    "uint64": _T.LONG, "UInt64": _T.LONG, "uint32": _T.LONG, "UInt32": _T.LONG,
    **dict.fromkeys(("int32", "Int32", "int16", "Int16", "int8", "Int8", "uint16", "UInt16",
                     "uint8", "UInt8"), _T.INTEGER),
}
_TYPE_BY_INFERRED: dict[str, ColumnType] = {
    "string": _T.STRING, "boolean": _T.BOOLEAN, "integer": _T.LONG, "floating": _T.DOUBLE,
    "mixed-integer-float": _T.DOUBLE, "datetime": _T.DATETIME, "datetime64": _T.DATETIME,
}
_TENSOR_DTYPE_BY_INFERRED = {"string": "str", "boolean": "bool", "integer": "int64",
                             "floating": "float64", "mixed-integer-float": "float64"}


def infer_signature(model_input: Any, model_output: Any = None) -> Signature:
    """Infer the contract of a model from its training input (and optionally its output).

    A DataFrame, a dict of column -> values or a list of record dicts gives one required
    ColumnSpec per column, in order, nullable iff the column holds a missing value. A numpy
    array (or a list of rows, or a Series) gives one TensorSpec whose batch dimension is
    free (-1); a dict of 2-D+ arrays gives one named TensorSpec each. String tensors get
    dtype ``"str"`` so that the contract does not depend on the longest training string.

    Raises:
        InvalidInputError: a column or array holds values no signature type describes
            (mixed types, only missing values, complex, timedelta, ...), naming it.
    """
    outputs = () if model_output is None else _infer_specs(model_output, "output")
    return Signature(inputs=_infer_specs(model_input, "input"), outputs=outputs)


def _infer_specs(data: Any, role: str) -> tuple[Spec, ...]:
    if isinstance(data, pd.DataFrame):
        return _column_specs(data, role)
    if isinstance(data, pd.Series):
        return (_tensor_spec(data.to_numpy(), None, role),)
    if isinstance(data, np.ndarray):
        return (_tensor_spec(data, None, role),)
    if isinstance(data, dict):
        if data and all(isinstance(v, np.ndarray) and v.ndim >= 2 for v in data.values()):
            return tuple(_tensor_spec(v, str(k), role) for k, v in data.items())
        return _column_specs(_dataframe(data, role), role)
    if isinstance(data, (list, tuple)):
        if data and all(isinstance(r, dict) for r in data):
            return _column_specs(_dataframe(list(data), role), role)
        try:
            array = np.asarray(data)
        except ValueError as exc:
            raise InvalidInputError(f"the model {role} is a ragged nested list: {exc}") from exc
        return (_tensor_spec(array, None, role),)
    raise InvalidInputError(
        f"cannot infer a signature from a model {role} of type {type(data).__name__}; "
        "pass a pandas DataFrame, a dict of columns, a list of records or a numpy array"
    )


def _dataframe(data: Any, role: str) -> Any:
    try:
        return pd.DataFrame(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"the model {role} is not a table: {exc}") from exc


def _column_specs(frame: Any, role: str) -> tuple[ColumnSpec, ...]:
    names = [str(c) for c in frame.columns]
    if not names:
        raise InvalidInputError(f"the model {role} has no columns")
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise InvalidInputError(f"the model {role} repeats column names {duplicated}")
    return tuple(
        ColumnSpec(name, _column_type(name, frame.iloc[:, i]), required=True,
                   nullable=bool(frame.iloc[:, i].isna().any()))
        for i, name in enumerate(names)
    )


def _column_type(name: str, series: Any) -> ColumnType:
    dtype = series.dtype
    found = _TYPE_BY_DTYPE.get(str(dtype))
    if found is not None:
        return found
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ColumnType.DATETIME
    if isinstance(dtype, pd.CategoricalDtype):
        return _column_type(name, pd.Series(dtype.categories))
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        found = _TYPE_BY_INFERRED.get(inferred)
        if found is not None:
            return found
        what = "only missing values" if inferred == "empty" else f"{inferred} values"
        raise InvalidInputError(
            f"column {name!r} holds {what}; a signature column needs one of the types "
            "double, float, long, integer, boolean, string, datetime: cast the column first"
        )
    raise InvalidInputError(
        f"column {name!r} has dtype {dtype}, which no signature type describes; cast it to "
        "a float, int, bool, string or datetime column first"
    )


def _tensor_spec(array: _Array, name: str | None, role: str) -> TensorSpec:
    kind = array.dtype.kind
    if kind in "biuf":
        dtype = str(array.dtype)
    elif kind == "U":
        dtype = "str"
    else:
        inferred = pd.api.types.infer_dtype(array.ravel(), skipna=True) if kind == "O" else ""
        if inferred not in _TENSOR_DTYPE_BY_INFERRED:
            raise InvalidInputError(
                f"the model {role} array has dtype {array.dtype}, which a tensor signature "
                "cannot describe; use a numeric, bool or str array"
            )
        dtype = _TENSOR_DTYPE_BY_INFERRED[inferred]
    if array.ndim == 0:
        raise InvalidInputError(f"the model {role} is a scalar, not an array of rows")
    return TensorSpec(dtype=dtype, shape=(-1, *array.shape[1:]), name=name)


# --- semver rule ----------------------------------------------------------------------


def compare_signatures(old: Signature | None, new: Signature | None) -> tuple[Bump, str]:
    """The smallest semver bump from a version with ``old`` to one with ``new`` (PRODUCT.md §1).

    MAJOR: an input column dropped, retyped, newly required (added as required, or optional
    turned required) or no longer nullable; any change of input tensors; a switch between
    column and tensor inputs; an output dropped or retyped; a signature added or removed.
    MINOR: only optional inputs or outputs added, or inputs relaxed (nullable, optional).
    PATCH: the same contract. The reason names the changes that decide the bump.
    """
    if old is None or new is None:
        if old is None and new is None:
            return Bump.PATCH, "same contract (neither version has a signature)"
        return Bump.MAJOR, "adds a signature" if old is None else "drops the signature"
    changes = [*_compare_specs(old.inputs, new.inputs, "input"),
               *_compare_specs(old.outputs, new.outputs, "output")]
    if not changes:
        return Bump.PATCH, "same contract"
    top = max(bump for bump, _ in changes)
    reasons = [reason for bump, reason in changes if bump is top]
    more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return top, "; ".join(reasons[:3]) + more


def _compare_specs(old: Sequence[Spec], new: Sequence[Spec], role: str) -> list[tuple[Bump, str]]:
    old_tensor = any(isinstance(s, TensorSpec) for s in old)
    new_tensor = any(isinstance(s, TensorSpec) for s in new)
    if old and new and old_tensor != new_tensor:
        kinds = ("columns", "tensors") if new_tensor else ("tensors", "columns")
        return [(Bump.MAJOR, f"switches {role}s from {kinds[0]} to {kinds[1]}")]
    if old_tensor or new_tensor:
        return _compare_tensors(old, new, role)
    return _compare_columns([s for s in old if isinstance(s, ColumnSpec)],
                            [s for s in new if isinstance(s, ColumnSpec)], role)


def _compare_columns(old: list[ColumnSpec], new: list[ColumnSpec],
                     role: str) -> list[tuple[Bump, str]]:
    is_input = role == "input"
    before = {c.name: c for c in old}
    after = {c.name: c for c in new}
    changes: list[tuple[Bump, str]] = []
    for a in old:
        b = after.get(a.name)
        what = f"{role} column {a.name!r}"
        if b is None:
            changes.append((Bump.MAJOR, f"drops {what}"))
            continue
        if a.type is not b.type:
            changes.append((Bump.MAJOR, f"changes type of {what} from {a.type.value} "
                                        f"to {b.type.value}"))
        if is_input and a.required != b.required:
            changes.append((Bump.MINOR, f"makes {what} optional") if a.required
                           else (Bump.MAJOR, f"makes {what} required"))
        if a.nullable != b.nullable:
            # Inputs may relax (accept nulls); outputs may tighten (never send nulls).
            relaxes = b.nullable if is_input else not b.nullable
            word = "nullable" if b.nullable else "non-nullable"
            changes.append((Bump.MINOR if relaxes else Bump.MAJOR, f"makes {what} {word}"))
    for b in new:
        if b.name not in before:
            if not is_input:
                changes.append((Bump.MINOR, f"adds output column {b.name!r}"))
            elif b.required:
                changes.append((Bump.MAJOR, f"adds required input column {b.name!r}"))
            else:
                changes.append((Bump.MINOR, f"adds optional input column {b.name!r}"))
    return changes


def _compare_tensors(old: Sequence[Spec], new: Sequence[Spec],
                     role: str) -> list[tuple[Bump, str]]:
    changes: list[tuple[Bump, str]] = []
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        assert isinstance(a, TensorSpec)
        assert isinstance(b, TensorSpec)
        what = f"{role} tensor {a.name!r}" if a.name else f"{role} tensor #{i}"
        if a.name != b.name:
            changes.append((Bump.MAJOR, f"renames {what} to {b.name!r}"))
        if a.dtype != b.dtype:
            changes.append((Bump.MAJOR, f"changes dtype of {what} from {a.dtype} to {b.dtype}"))
        if a.shape != b.shape:
            changes.append((Bump.MAJOR, f"changes shape of {what} from {_shape(a.shape)} "
                                        f"to {_shape(b.shape)}"))
    added_bump = Bump.MINOR if role == "output" else Bump.MAJOR
    changes += [(added_bump, f"adds {role} tensor #{i}") for i in range(len(old), len(new))]
    changes += [(Bump.MAJOR, f"drops {role} tensor #{i}") for i in range(len(new), len(old))]
    return changes


def _shape(shape: Iterable[int]) -> str:
    return str(tuple(shape))


# --- problems -------------------------------------------------------------------------


class _Problems:
    """Collects problem details up to a limit while counting all of them."""

    __slots__ = ("details", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.details: list[dict[str, Any]] = []
        self.limit = limit
        self.total = 0

    def add(self, where: str, column: str | None, row: int | None, expected: str | None,
            got: str | None, what: str, *, say_row: bool = True, **extra: Any) -> None:
        self.total += 1
        if len(self.details) < self.limit:
            at = f" at row {row}" if say_row and row is not None else ""
            self.details.append({"column": column, "row": row, "expected": expected,
                                 "got": got, "message": f"{where}: {what}{at}", **extra})

    def raise_if_any(self) -> None:
        if self.total:
            raise SignatureViolationError(self.details, total=self.total)


class _Missing:
    """Marks a value absent from a record (as opposed to an explicit null)."""

    __slots__ = ()


class _RejectError(Exception):
    """A value that does not fit its column; ``got`` names what it was. Never escapes."""

    def __init__(self, got: str) -> None:
        self.got = got


_MISSING = _Missing()
_NAT: Any = pd.NaT
_NA: Any = pd.NA
_FLOATS = (float, np.floating)
_INTS = (int, np.integer)
_BOOLS = (bool, np.bool_)
_LABELS: dict[type, str] = {str: "string", bool: "boolean", int: "long", float: "double",
                            type(None): "null", dict: "object", list: "array",
                            tuple: "array", _Missing: "missing"}
_INT_BOUNDS = {_T.LONG: (-(2**63), 2**63 - 1), _T.INTEGER: (-(2**31), 2**31 - 1)}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBERS = frozenset({float, int})
_NUMBERS_OR_NULL = frozenset({float, int, type(None)})


def _label(value: Any) -> str:
    """The JSON-ish type name of a value, in the vocabulary of signature types."""
    label = _LABELS.get(type(value))
    if label is not None:
        return label
    for types, name in ((_BOOLS, "boolean"), (_INTS, "long"), (_FLOATS, "double"),
                        (str, "string"), (Mapping, "object"), ((list, np.ndarray), "array")):
        if isinstance(value, types):
            return name
    return type(value).__name__


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


# --- tensors --------------------------------------------------------------------------


def _tensor_dtype(spec: TensorSpec) -> np.dtype[Any]:
    try:
        dtype = np.dtype(np.str_ if spec.dtype == "str" else spec.dtype)
    except TypeError:
        dtype = np.dtype(object)
    if dtype.kind not in "biufU":
        raise InvalidInputError(
            f"tensor dtype {spec.dtype!r} cannot be enforced; use a numeric, bool or str dtype"
        )
    return dtype


def _shape_matches(shape: tuple[int, ...], spec_shape: tuple[int, ...]) -> bool:
    return len(shape) == len(spec_shape) and all(
        want in (-1, got) for want, got in zip(spec_shape, shape, strict=True)
    )


def _fast_tensor(data: Any, spec: TensorSpec, target: np.dtype[Any]) -> _Array | None:
    """The payload as one array of the target dtype, or None when it needs a closer look."""
    try:
        array = data if isinstance(data, np.ndarray) else np.array(data)
    except (ValueError, TypeError, OverflowError):
        return None
    source = array.dtype.kind
    if not _shape_matches(array.shape, spec.shape) or source not in "biufU":
        return None
    if isinstance(data, list):
        # np.array silently turns True into 1 and 1 into "1"; the Python types tell.
        flat: Iterable[Any] = data
        for _ in range(array.ndim - 1):
            flat = chain.from_iterable(flat)
        types = set(map(type, flat))
        if target.kind == "U" and types != {str}:
            return None
        if target.kind in "iuf" and types & {bool, np.bool_}:
            return None
    kind = target.kind
    if kind in "bU":
        return array if source == kind else None
    if source not in "iuf":
        return None
    if source == "f" and not np.isfinite(array).all():
        return None
    if kind == "f":
        limit = float(np.finfo(target).max)
        if array.max() > limit or array.min() < -limit:
            return None
        return array.astype(target, copy=False)
    info = np.iinfo(target)
    if source == "f":
        if (array != np.trunc(array)).any():
            return None
        if array.min() < info.min or array.max() >= float(info.max) + 1:
            return None
    elif int(array.min()) < info.min or int(array.max()) > info.max:
        return None
    return array.astype(target, copy=False)


def _tensor_value_problem(value: Any, target: np.dtype[Any]) -> tuple[str, str] | None:
    """(got, what) for a tensor element that does not fit the target dtype, else None."""
    kind = target.kind
    if value is None:
        return "null", "null value not allowed"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "ragged", "ragged values"
    if isinstance(value, _FLOATS) and not math.isfinite(value):
        return ("nan" if value != value else "-inf" if value < 0 else "inf"), "non-finite value"
    got: str | None = _label(value)
    if kind == "U":
        got = None if isinstance(value, str) else got
    elif kind == "b" or isinstance(value, _BOOLS):
        got = None if kind == "b" and isinstance(value, _BOOLS) else got
    elif isinstance(value, (*_INTS, *_FLOATS)):
        got = _number_problem(value, target)
    return None if got is None else (got, f"expected {_dtype_name(target)}, got {got}")


def _number_problem(value: Any, target: np.dtype[Any]) -> str | None:
    if target.kind == "f":
        try:
            fits = abs(float(value)) <= float(np.finfo(target).max)
        except OverflowError:
            fits = False
    elif isinstance(value, _FLOATS) and not float(value).is_integer():
        return "non-integral double"
    else:
        info = np.iinfo(target)
        fits = info.min <= int(value) <= info.max
    return None if fits else f"{_label(value)} out of range"


def _dtype_name(dtype: np.dtype[Any]) -> str:
    return "str" if dtype.kind == "U" else str(dtype)


def _diagnose_tensor(data: Any, spec: TensorSpec, target: np.dtype[Any], where: str,
                     problems: _Problems) -> None:
    """Report every row of a tensor payload that does not fit its spec."""
    if spec.shape and spec.shape[0] != -1 and len(data) != spec.shape[0]:
        problems.add(where, spec.name, None, f"{spec.shape[0]} rows", f"{len(data)} rows",
                     f"expected {spec.shape[0]} rows, got {len(data)}")
    row_shape = spec.shape[1:]
    first: tuple[int, ...] | None = None
    for row, item in enumerate(data):
        try:
            cell = np.array(item, dtype=object)
        except ValueError:  # raggedness numpy cannot even hold as objects
            cell = None
        if cell is not None and _shape_matches(cell.shape, row_shape):
            if first is None:
                first = cell.shape
            elif cell.shape != first:
                problems.add(where, spec.name, row, _shape(first), _shape(cell.shape),
                             f"expected row shape {_shape(first)} like the first row, "
                             f"got {_shape(cell.shape)}")
                continue
        else:
            if cell is None or any(isinstance(v, (list, tuple)) for v in cell.flat):
                got, what = "ragged", "ragged values"
            else:
                got = _shape(cell.shape)
                what = f"expected row shape {_shape(row_shape)}, got {got}"
            problems.add(where, spec.name, row, _shape(row_shape), got, what)
            continue
        for value in cell.flat:
            found = _tensor_value_problem(value, target)
            if found is not None:
                problems.add(where, spec.name, row, spec.dtype, found[0], found[1])
                break


# --- the validator --------------------------------------------------------------------


class InputValidator:
    """Turns request payloads into model input under one signature; build it once per version.

    Column signatures take a list of records (``[{"age": 3}, ...]``) or a dict of columns
    (``{"age": [3, ...]}``; a dict of scalars is one record) and give a DataFrame with
    exactly the signature's columns, in order: double -> float64, float -> float32,
    long -> int64, integer -> int32 (both float64 once nulls are present), boolean -> bool
    (object with None once nulls are present), string -> object, datetime -> datetime64[us]
    (UTC-aware when any value carries an offset). A missing optional column is all nulls.

    Tensor signatures take a nested list of rows, or a dict of name -> nested list when
    there are several tensors, and give the ndarray (or dict of ndarrays) cast to each
    spec's dtype with its shape checked (-1 is free).

    An instance keeps no per-call state, so one can serve concurrent requests.
    """

    def __init__(self, signature: Signature, *, max_problems: int = 100) -> None:
        """Raises InvalidInputError if the signature has no inputs or mixes columns and
        tensors, or if ``max_problems`` is below 1."""
        if max_problems < 1:
            raise InvalidInputError(f"max_problems must be at least 1, got {max_problems}")
        if not signature.inputs:
            raise InvalidInputError("the signature has no inputs, so there is nothing to check")
        self.signature = signature
        self.max_problems = max_problems
        tensors = [s for s in signature.inputs if isinstance(s, TensorSpec)]
        columns = signature.columns
        if tensors and columns:
            raise InvalidInputError("the signature mixes columns and tensors in its inputs")
        self._tensors = tuple((s, _tensor_dtype(s), s.name or str(i), _tensor_where(s))
                              for i, s in enumerate(tensors))
        self._columns = columns
        self._names = tuple(c.name for c in columns)
        self._known = frozenset(self._names)
        if len(self._known) != len(self._names):
            raise InvalidInputError("the signature repeats an input column name")
        self._getter: Callable[[Any], Any] = itemgetter(*self._names) if columns else len
        self._index = pd.Index(self._names)
        kinds = {c.type for c in columns}
        self._block: type[np.floating[Any]] | None = (
            np.float64 if kinds == {_T.DOUBLE} else np.float32 if kinds == {_T.FLOAT} else None)

    def validate(self, payload: Any) -> Any:
        """The model input for ``payload``: a DataFrame, an ndarray, or a dict of ndarrays.

        Raises:
            SignatureViolationError: the payload breaks the signature. ``details`` holds up
                to ``max_problems`` problems ``{"column", "row", "expected", "got",
                "message"}`` (rows 0-based) and the message counts them all. Shape problems
                (not a list or dict, a record that is not a dict, columns of different
                lengths, no rows) are reported alone, before any value is looked at.
        """
        if self._tensors:
            return self._validate_tensors(payload)
        problems = _Problems(self.max_problems)
        if isinstance(payload, pd.DataFrame):
            payload = {str(c): payload.iloc[:, i].tolist() for i, c in enumerate(payload.columns)}
        if isinstance(payload, list):
            columns, by_row = self._from_records(payload, problems)
        elif isinstance(payload, dict):
            columns, by_row = self._from_columns(payload, problems)
        else:
            _structural(None, None, "a list of records or a dict of columns", _label(payload),
                        "input", "expected a list of records or a dict of columns, got "
                        + _label(payload))
        if self._block is not None and not problems.total:
            block = self._float_block(columns)
            if block is not None:
                return pd.DataFrame(block if by_row else block.T, columns=self._index,
                                    copy=False)
        if by_row:
            columns = list(zip(*columns, strict=True))
        arrays: list[Any] = [
            None if values is None else _convert_column(values, spec, problems)
            for spec, values in zip(self._columns, columns, strict=True)]
        problems.raise_if_any()
        first = arrays[0]
        if all(isinstance(a, np.ndarray) and a.dtype == first.dtype and a.dtype.kind in "biuf"
               for a in arrays):
            # One 2-D block builds a DataFrame several times faster than a dict of columns.
            block = np.column_stack(arrays) if len(arrays) > 1 else first.reshape(-1, 1)
            return pd.DataFrame(block, columns=self._index, copy=False)
        return pd.DataFrame(dict(zip(self._names, arrays, strict=True)),
                            index=pd.RangeIndex(len(columns[0])), copy=False)

    def _float_block(self, values: list[Any]) -> _Array | None:
        """All-float signatures: every value at once, when every one is a finite number."""
        if not set(map(type, chain.from_iterable(values))) <= _NUMBERS:
            return None
        try:
            block = np.array(values, dtype=np.float64)
        except OverflowError:
            return None
        if not np.isfinite(block).all():
            return None
        if self._block is np.float32:
            return None if (np.abs(block) > _FLOAT32_MAX).any() else block.astype(np.float32)
        return block

    def _from_records(self, records: list[Any], problems: _Problems) -> tuple[list[Any], bool]:
        """The values by column, or by row (True) when every record is complete."""
        if not records:
            _structural(None, None, "at least 1 row", "0 rows", "input", "has no rows")
        if set(map(type, records)) != {dict}:
            bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
            if bad:
                shape = _Problems(self.max_problems)
                for i in bad:
                    shape.add("input", None, i, "object", _label(records[i]),
                              f"expected a record (an object of column values), "
                              f"got {_label(records[i])}")
                shape.raise_if_any()
        try:
            rows = list(map(self._getter, records))
            complete = sum(map(len, records)) == len(records) * len(self._names)
        except KeyError:
            complete = False
        if complete:
            return ([rows], False) if len(self._names) == 1 else (rows, True)
        extra = dict.fromkeys(k for r in records for k in r if k not in self._known)
        for key in extra:
            problems.add(f"column {key!r}", str(key), None, None, None, "unexpected column")
        return [[r.get(name, _MISSING) for r in records] for name in self._names], False

    def _from_columns(self, payload: dict[Any, Any],
                      problems: _Problems) -> tuple[list[Any], bool]:
        if payload and not any(isinstance(v, (list, tuple, np.ndarray, pd.Series))
                               for v in payload.values()):
            return self._from_records([payload], problems)
        shape = _Problems(self.max_problems)
        given: dict[str, Sequence[Any]] = {}
        for key, value in payload.items():
            if isinstance(value, (np.ndarray, pd.Series)):
                value = value.tolist()
            if isinstance(value, (list, tuple)):
                given[str(key)] = value
            else:
                shape.add(f"column {key!r}", str(key), None, "array", _label(value),
                          f"expected a list of values, got {_label(value)}")
        lengths = Counter(map(len, given.values()))
        n_rows = lengths.most_common(1)[0][0] if lengths else 0
        for key, seq in given.items():
            if len(seq) != n_rows:
                shape.add(f"column {key!r}", key, None, f"{n_rows} values", f"{len(seq)} values",
                          f"has {len(seq)} values, expected {n_rows} like the other columns")
        shape.raise_if_any()
        if n_rows == 0:
            _structural(None, None, "at least 1 row", "0 rows", "input", "has no rows")
        for key in given:
            if key not in self._known:
                problems.add(f"column {key!r}", key, None, None, None, "unexpected column")
        columns: list[Any] = []
        for spec in self._columns:
            values: Sequence[Any] | None = given.get(spec.name)
            if values is None and spec.required:
                problems.add(f"column {spec.name!r}", spec.name, None, spec.type.value,
                             "missing", "required column is missing")
            columns.append([_MISSING] * n_rows if values is None and not spec.required
                           else values)
        return columns, False

    def _validate_tensors(self, payload: Any) -> Any:
        problems = _Problems(self.max_problems)
        if len(self._tensors) == 1 and not isinstance(payload, dict):
            given = {self._tensors[0][2]: payload}
        elif isinstance(payload, dict) and (len(self._tensors) > 1
                                            or self._tensors[0][0].name is not None):
            given = {str(k): v for k, v in payload.items()}
            known = {t[2] for t in self._tensors}
            for key in given:
                if key not in known:
                    problems.add(f"tensor {key!r}", key, None, None, None, "unexpected tensor")
        else:
            names = ", ".join(repr(t[2]) for t in self._tensors)
            expected = "a nested list" if len(self._tensors) == 1 else f"a dict of {names}"
            _structural(None, None, expected, _label(payload), "input",
                        f"expected {expected}, got {_label(payload)}")
        out: dict[str, _Array] = {}
        for spec, target, key, where in self._tensors:
            if key not in given:
                problems.add(where, spec.name, None, spec.dtype, "missing",
                             "required tensor is missing")
                continue
            array = self._tensor(given[key], spec, target, where, problems)
            if array is not None:
                out[key] = array
        problems.raise_if_any()
        return out[self._tensors[0][2]] if len(self._tensors) == 1 else out

    @staticmethod
    def _tensor(data: Any, spec: TensorSpec, target: np.dtype[Any], where: str,
                problems: _Problems) -> _Array | None:
        if isinstance(data, tuple) or (isinstance(data, np.ndarray) and data.dtype == object):
            data = list(data) if isinstance(data, tuple) else data.tolist()
        if not isinstance(data, (list, np.ndarray)) or getattr(data, "ndim", 1) == 0:
            problems.add(where, spec.name, None, "array", _label(data),
                         f"expected a nested list of rows, got {_label(data)}")
            return None
        if len(data) == 0:
            _structural(spec.name, None, "at least 1 row", "0 rows", where, "has no rows")
        array = _fast_tensor(data, spec, target)
        if array is not None:
            return array
        before = problems.total
        _diagnose_tensor(data, spec, target, where, problems)
        if problems.total == before:
            problems.add(where, spec.name, None, spec.dtype, None,
                         f"does not fit dtype {spec.dtype} and shape {_shape(spec.shape)}")
        return None


def _tensor_where(spec: TensorSpec) -> str:
    return f"tensor {spec.name!r}" if spec.name else "tensor"


def _structural(column: str | None, row: int | None, expected: str, got: str, where: str,
                what: str) -> NoReturn:
    """Raise a SignatureViolationError for a payload whose shape is wrong as a whole."""
    problems = _Problems(1)
    problems.add(where, column, row, expected, got, what)
    raise SignatureViolationError(problems.details)


# --- input examples -------------------------------------------------------------------


def to_jsonable(example: Any, max_rows: int = 5) -> list[Any] | dict[str, Any]:
    """A JSON-able copy of at most ``max_rows`` rows of an input example.

    A DataFrame gives a list of records; an ndarray or list gives a (nested) list; a dict
    keeps its keys and cuts each list-like value. NaN/NaT/NA become None, timestamps ISO
    8601 strings, numpy scalars Python ones, non-finite floats None.

    Raises:
        InvalidInputError: the example (or a value inside it) has no JSON form.
    """
    if max_rows < 1:
        raise InvalidInputError(f"max_rows must be at least 1, got {max_rows}")
    if isinstance(example, pd.DataFrame):
        head = example.iloc[:max_rows]
        names = [str(c) for c in head.columns]
        columns = [_jsonable(head.iloc[:, i].tolist()) for i in range(len(names))]
        rows = zip(*columns, strict=True)
        return [dict(zip(names, values, strict=True)) for values in rows] if names else []
    if isinstance(example, dict):
        return {str(k): _jsonable(_head(v, max_rows)) for k, v in example.items()}
    if isinstance(example, (list, tuple, pd.Series)) or (
            isinstance(example, np.ndarray) and example.ndim > 0):
        return list(_jsonable(_head(example, max_rows)))
    raise InvalidInputError(
        f"an input example must be a DataFrame, an array, a dict or a list, not "
        f"{type(example).__name__}"
    )


def _head(value: Any, max_rows: int) -> Any:
    if isinstance(value, pd.Series):
        return value.iloc[:max_rows].tolist()
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return value[:max_rows]
    if isinstance(value, (list, tuple)):
        return value[:max_rows]
    return value


def _jsonable(value: Any) -> Any:
    if value is None or value is _NAT or value is _NA:
        return None
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in (value if value.dtype.kind in "OMm" else value.tolist())]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.Series):
        return _jsonable(value.tolist())
    raise InvalidInputError(f"a value of type {type(value).__name__} has no JSON form")


def example_from_jsonable(data: Any, signature: Signature | None = None) -> Any:
    """Rebuild model input from what :func:`to_jsonable` produced.

    With a signature this is ``InputValidator(signature).validate(data)`` (and raises what
    it raises); without one, records or a dict of columns give a DataFrame and anything
    else an ndarray.
    """
    if signature is not None and signature.inputs:
        return InputValidator(signature).validate(data)
    if isinstance(data, dict) or (
            isinstance(data, list) and data and all(isinstance(r, dict) for r in data)):
        return _dataframe(data, "input example")
    try:
        return np.asarray(data)
    except ValueError as exc:
        raise InvalidInputError(f"the input example is a ragged nested list: {exc}") from exc
