"""The request validator: a payload to model input under one signature, or every problem.

The validator sits on the prediction hot path: columns go through ``_columns`` (numpy in one
call when a column is clean) and tensors through ``_tensor``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelhost.entities import ColumnType, Signature, TensorSpec
from modelhost.errors import InvalidInputError, SignatureViolationError
from modelhost.signature._columns import _FLOAT32_MAX, _NUMBERS, _convert_column
from modelhost.signature._problems import _MISSING, _label, _Problems, _shape
from modelhost.signature._tensor import _diagnose_tensor, _fast_tensor, _tensor_dtype

__all__ = ["InputValidator"]

_Array = npt.NDArray[Any]
_T = ColumnType


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
        self._numeric_block = self._block is not None and all(
            c.required and not c.nullable for c in columns)

    @property
    def numeric_block(self) -> bool:
        """Whether :meth:`validate` can give a plain 2-D array (``as_array=True``): every
        column required, not nullable, and of one floating type."""
        return self._numeric_block

    def validate(self, payload: Any, *, as_array: bool = False) -> Any:
        """The model input for ``payload``: a DataFrame, an ndarray, or a dict of ndarrays.

        With ``as_array=True`` and a :attr:`numeric_block` signature, the result is a 2-D
        array with the signature's columns in order instead of a DataFrame (the serving
        hot path skips pandas entirely then).

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
            block = self._frame_block(payload)
            if block is not None:  # a numeric frame as it should be: no value to look at
                if as_array and self._numeric_block:
                    return block
                return pd.DataFrame(block, columns=self._index, copy=False)
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
                block = block if by_row else block.T
                if as_array and self._numeric_block:
                    return np.ascontiguousarray(block)
                return pd.DataFrame(block, columns=self._index, copy=False)
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
            if as_array and self._numeric_block:
                return block
            return pd.DataFrame(block, columns=self._index, copy=False)
        return pd.DataFrame(dict(zip(self._names, arrays, strict=True)),
                            index=pd.RangeIndex(len(columns[0])), copy=False)

    def _frame_block(self, frame: pd.DataFrame) -> _Array | None:
        """All-float signatures and a DataFrame of exactly their columns, each of a
        numeric dtype, every value finite: the 2-D block at once, column by column in
        numpy (batch jobs and scoring send millions of rows). Anything else: None, and
        the value-by-value path finds and names the problems."""
        if self._block is None or len(frame.columns) != len(self._names) \
                or set(map(str, frame.columns)) != set(self._names) \
                or not all(frame[name].dtype.kind in "fiu" for name in self._names):
            return None
        block: _Array = frame[list(self._names)].to_numpy(dtype=np.float64)
        if not len(block) or not np.isfinite(block).all():
            return None
        if self._block is np.float32:
            return None if (np.abs(block) > _FLOAT32_MAX).any() else block.astype(np.float32)
        return block

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
