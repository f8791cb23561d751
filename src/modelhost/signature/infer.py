"""Signature inference: the contract of a model from its training input and output."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelhost.entities import ColumnSpec, ColumnType, Signature, Spec, TensorSpec
from modelhost.errors import InvalidInputError

__all__ = ["infer_signature"]

_Array = npt.NDArray[Any]

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
    """A DataFrame from records or a dict of columns; a dict of single values is one row."""
    if isinstance(data, dict) and data:
        scalar = [not _is_list_like(v) for v in data.values()]
        if all(scalar):
            data = [data]
        elif any(scalar):
            names = [str(k) for k, one in zip(data, scalar, strict=True) if one][:3]
            raise InvalidInputError(
                f"the model {role} mixes single values ({', '.join(map(repr, names))}) with "
                'lists of values: give one record {"col": value, ...} or columns '
                '{"col": [value, ...], ...}')
    try:
        return pd.DataFrame(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"the model {role} is not a table ({exc}): give records "
            '[{"col": value, ...}, ...], one record {"col": value, ...} or columns '
            '{"col": [value, ...], ...}') from exc


def _is_list_like(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray, pd.Series))


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
