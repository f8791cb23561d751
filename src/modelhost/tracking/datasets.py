"""Dataset versioning: content-addressed CSV/Parquet files or folders with a profile."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelhost import signature as signatures  # pandas loads on first use
from modelhost._utils import validate_name
from modelhost.artifacts import ArtifactStore, TreeResult
from modelhost.entities import ColumnSpec, DatasetVersion
from modelhost.errors import (
    FileNotFoundInputError,
    InvalidInputError,
    MissingDependencyError,
)
from modelhost.store import DatasetStore

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_TOP_CATEGORIES = 20
# The probability levels of a numeric column's ``quantiles`` and ``percentiles`` in a
# profile; the finer percentiles (deciles and the tails) let a diff estimate a PSI.
QUANTILE_LEVELS = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
PERCENTILE_LEVELS = (0.0, 0.01, 0.05, *(i / 10 for i in range(1, 10)), 0.95, 0.99, 1.0)


class Datasets:
    def __init__(self, store: DatasetStore, artifacts: ArtifactStore, *,
                 references: Callable[[], set[str]] | None = None) -> None:
        self._store = store
        self._artifacts = artifacts
        # Every artifact digest in use anywhere: what a failed add must not delete.
        self._references = references or store.digests

    def add(self, path: str | Path, *, name: str) -> tuple[DatasetVersion, bool]:
        """Store a data file or folder as a version of ``name``.

        Identical content is the same version: returns it with ``created`` False.
        """
        validate_name(name, "dataset")
        source = Path(path)
        if not source.exists():
            raise FileNotFoundInputError(str(path))
        fmt, files = _data_files(source)
        frame = _read(files, fmt)
        schema = _schema(frame)
        tree = self._put_content(source, fmt)
        try:
            return self._store.add_version(name, digest=tree.digest, format=fmt,
                                           n_rows=len(frame), size=tree.size, schema=schema,
                                           profile=profile(frame))
        except BaseException:
            self._artifacts.discard_unreferenced(tree.created_blobs, in_use=self._references())
            raise

    def _put_content(self, source: Path, fmt: str) -> TreeResult:
        """Store the data so that the digest depends on content, not on a file's name."""
        if source.is_dir():
            return self._artifacts.put_tree(source)
        with tempfile.TemporaryDirectory(prefix="modelhost-data-") as tmp:
            staged = Path(tmp) / f"data.{fmt}"
            shutil.copyfile(source, staged)
            return self._artifacts.put_tree(staged)

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        return self._store.get_version(validate_name(name, "dataset"), version)

    def versions(self, name: str) -> list[DatasetVersion]:
        return self._store.list_versions(validate_name(name, "dataset"))

    def names(self) -> list[str]:
        return self._store.list_datasets()

    def materialize(self, dv: DatasetVersion, dest: Path) -> Path:
        """Write the verified files of a dataset version into ``dest``."""
        return self._artifacts.get_tree(dv.digest, dest)


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


def _data_files(source: Path) -> tuple[str, list[Path]]:
    if source.is_file():
        files = [source]
    else:
        files = sorted(p for p in source.rglob("*") if p.is_file()
                       and p.suffix.lower() in _FORMATS)
        if not files:
            raise InvalidInputError("the folder holds no .csv or .parquet file")
    formats = {_FORMATS.get(p.suffix.lower()) for p in files}
    if None in formats or len(formats) != 1:
        raise InvalidInputError(
            "a dataset is CSV or Parquet files (.csv, .parquet), all of one format")
    return str(formats.pop()), files


def _read(files: list[Path], fmt: str) -> Any:
    import pandas as pd

    try:
        if fmt == "csv":
            frames = [pd.read_csv(f) for f in files]
        else:
            frames = [pd.read_parquet(f) for f in files]
    except ImportError as exc:
        raise MissingDependencyError("reading Parquet files", "parquet") from exc
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"the data could not be read as {fmt}: "
                                f"{type(exc).__name__}") from exc
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if frame.shape[1] == 0:
        raise InvalidInputError("the data has no columns")
    return frame


def _schema(frame: Any) -> dict[str, str]:
    """Column types as in signatures; a column no signature type fits (all empty, mixed
    types) is recorded as ``unknown`` rather than refusing the whole dataset."""
    schema: dict[str, str] = {}
    for name in frame.columns:
        try:
            spec = signatures.infer_signature(frame[[name]]).inputs[0]
        except InvalidInputError:
            schema[str(name)] = "unknown"
            continue
        schema[str(name)] = spec.type.value if isinstance(spec, ColumnSpec) else "unknown"
    return schema


def profile(frame: Any) -> dict[str, Any]:
    """Per-column statistics: null rate, and quantiles or category frequencies.

    A numeric column has ``mean``, ``std``, ``min``, ``max``, ``quantiles`` (at
    ``QUANTILE_LEVELS``) and ``percentiles`` (at ``PERCENTILE_LEVELS``; absent from
    profiles written before it existed); a categorical one its ``unique`` count and the
    ``top`` 20 values with their counts.
    """
    import pandas as pd

    columns: dict[str, Any] = {}
    n = len(frame)
    for name in frame.columns:
        col = frame[name]
        stats: dict[str, Any] = {"nulls": int(col.isna().sum()),
                                 "null_rate": _num(col.isna().mean()) if n else 0.0}
        values = col.dropna()
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            counts = values.astype(str).value_counts()
            stats.update(kind="categorical", unique=int(counts.size),
                         top={str(k): int(v) for k, v in counts.head(_TOP_CATEGORIES).items()})
        elif len(values):
            quantiles = values.quantile(list(QUANTILE_LEVELS)).tolist()
            percentiles = values.quantile(list(PERCENTILE_LEVELS)).tolist()
            stats.update(kind="numeric", mean=_num(values.mean()), std=_num(values.std()),
                         min=_num(quantiles[0]), max=_num(quantiles[-1]),
                         quantiles=[_num(q) for q in quantiles],
                         percentiles=[_num(q) for q in percentiles])
        else:
            stats.update(kind="numeric")
        columns[str(name)] = stats
    return {"rows": n, "columns": columns}


def _num(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


__all__ = ["PERCENTILE_LEVELS", "QUANTILE_LEVELS", "Datasets", "profile", "read_frame",
           "read_version"]
