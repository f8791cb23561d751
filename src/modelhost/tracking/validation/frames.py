"""The frame helpers that inference and validation share; reading tables
(:func:`read_frame`, :func:`read_version`) lives with the datasets and is re-exported.
"""

from __future__ import annotations

from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.tracking.datasets import read_frame, read_version


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


__all__ = ["read_frame", "read_version"]
