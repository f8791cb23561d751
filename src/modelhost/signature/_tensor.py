"""Tensor validation: a nested-list payload to one array of its spec's dtype and shape."""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from modelhost.entities import TensorSpec
from modelhost.errors import InvalidInputError
from modelhost.signature._problems import _BOOLS, _FLOATS, _INTS, _label, _Problems, _shape

_Array = npt.NDArray[Any]


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
