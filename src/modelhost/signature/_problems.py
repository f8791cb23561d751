"""How validation words a problem: the collector of problems and the names it gives values.

A problem has the shape of PRODUCT.md §3.6: ``{"column", "row", "expected", "got",
"message"}``. Values are named in the vocabulary of signature types, shapes as tuples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelhost.errors import SignatureViolationError


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


_MISSING = _Missing()
_FLOATS = (float, np.floating)
_INTS = (int, np.integer)
_BOOLS = (bool, np.bool_)
_LABELS: dict[type, str] = {str: "string", bool: "boolean", int: "long", float: "double",
                            type(None): "null", dict: "object", list: "array",
                            tuple: "array", _Missing: "missing"}


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


def _shape(shape: Iterable[int]) -> str:
    return str(tuple(shape))
