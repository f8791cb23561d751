"""Rows for scoring, shared by jobs and Dask batch: numbers read back from CSV text, and
each chunk split into the rows the signature accepts and those it refuses, with why."""

from __future__ import annotations

import re
from typing import Any

from modelhost.errors import InvalidInputError, SignatureViolationError

_AT_ROW = re.compile(r" at row \d+$")


def prepare_rows(scorer: Any, chunk: Any, start: int) -> tuple[Any, list[int],
                                                          list[tuple[int, str]]]:
    """The model input of the rows of ``chunk`` the signature accepts, their positions in
    the whole input, and (position, reason) of those it refuses. A problem with the input
    as a whole (a missing column) fails the job."""
    positions = list(range(start, start + len(chunk)))
    refused: list[tuple[int, str]] = []
    while True:
        try:
            return scorer.prepare(chunk), positions, refused
        except SignatureViolationError as exc:
            details = exc.details or []
            if not details or any(d.get("row") is None for d in details):
                raise
            reasons: dict[int, list[str]] = {}
            for detail in details:  # "... at row 3" counts in the chunk: say it once
                message = _AT_ROW.sub("", str(detail["message"]))
                reasons.setdefault(int(detail["row"]), []).append(message)
            bad = sorted(reasons)
            refused.extend((positions[i], "; ".join(reasons[i])) for i in bad)
            keep = [i for i in range(len(positions)) if i not in reasons]
            positions = [positions[i] for i in keep]
            if not positions:
                return None, [], refused
            chunk = chunk.iloc[keep].reset_index(drop=True)


_NUMERIC = frozenset({"double", "float", "long", "integer"})


def numbers_from_text(frame: Any, signature: Any) -> Any:
    """CSV has no types: a numeric column with one bad value is read as text. Turn the
    values that are numbers back into numbers, and leave the others as they are, so
    that the signature refuses those rows only, and says why."""
    import pandas as pd

    for spec in signature.columns or ():
        name = spec.name
        if name in frame.columns and spec.type.value in _NUMERIC \
                and not pd.api.types.is_numeric_dtype(frame[name]):
            text = frame[name].astype(object)
            numbers = pd.to_numeric(text, errors="coerce")
            frame[name] = numbers.astype(object).where(numbers.notna() | text.isna(), text)
    return frame


def dataset_uri(uri: Any) -> tuple[str, int | None]:
    problem = ("'input_uri' must name a dataset version: dataset://NAME or "
               "dataset://NAME/VERSION")
    if not isinstance(uri, str) or not uri.startswith("dataset://"):
        raise InvalidInputError(problem)
    name, _, number = uri.removeprefix("dataset://").strip("/").partition("/")
    if not name:
        raise InvalidInputError(problem)
    if not number:
        return name, None
    if not number.isdigit():
        raise InvalidInputError(f"{problem}; {number!r} is not a version number")
    return name, int(number)
