"""Input examples: a JSON-able copy of a few rows, and model input rebuilt from it."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelhost.entities import Signature
from modelhost.errors import InvalidInputError
from modelhost.signature._columns import _NA, _NAT
from modelhost.signature.infer import _dataframe
from modelhost.signature.validate import InputValidator

__all__ = ["example_from_jsonable", "to_jsonable"]


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


def example_from_jsonable(data: Any, signature: Signature | None = None, *,
                          what: str = "input example") -> Any:
    """Rebuild model input from what :func:`to_jsonable` produced.

    With a signature this is ``InputValidator(signature).validate(data)`` (and raises what
    it raises); without one, records or a dict of columns give a DataFrame (a dict of
    single values is one row) and anything else an ndarray. ``what`` names the data in
    error messages.
    """
    if signature is not None and signature.inputs:
        return InputValidator(signature).validate(data)
    if isinstance(data, dict) or (
            isinstance(data, list) and data and all(isinstance(r, dict) for r in data)):
        return _dataframe(data, what)
    try:
        return np.asarray(data)
    except ValueError as exc:
        raise InvalidInputError(f"the model {what} is a ragged nested list: {exc}") from exc
