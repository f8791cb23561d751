"""Reading tables: a CSV/Parquet file or folder, or a registered dataset version, as one
pandas DataFrame; and the frame helpers that inference and validation share.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from modelhost.entities import DatasetVersion
from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.tracking.datasets import Datasets, _data_files, _read


def read_frame(path: str | Path) -> Any:
    """The table in a CSV/Parquet file or a folder of such files, as one DataFrame.

    Raises:
        FileNotFoundInputError: nothing exists at ``path``.
        InvalidInputError: the file is no CSV/Parquet data.
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundInputError(str(path))
    fmt, files = _data_files(source)
    return _read(files, fmt)


def read_version(datasets: Datasets, dv: DatasetVersion) -> Any:
    """The data of a registered dataset version (verified against its digest)."""
    with tempfile.TemporaryDirectory(prefix="modelhost-data-") as tmp:
        folder = datasets.materialize(dv, Path(tmp) / "data")
        fmt, files = _data_files(folder)
        return _read(files, fmt)


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
