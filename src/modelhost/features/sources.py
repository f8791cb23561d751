"""Reading a feature view's source: Parquet or CSV, as one file, a folder of files, a glob
or an fsspec URL (``s3://bucket/stats/*.parquet``), or a table of the offline database.
A relative path is read from the current folder, as every command reads its files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelhost.errors import FileNotFoundInputError, InvalidInputError, MissingDependencyError
from modelhost.features.definitions import FeatureView, Source, TableSource

_FORMATS = (".parquet", ".pq", ".csv")


def read_source(source: Source, columns: Sequence[str] | None = None, *,
                database: str | None = None) -> Any:
    """The source's rows as one DataFrame (only ``columns`` when given). A table source
    is read from ``database`` (a SQLAlchemy URL: the offline database)."""
    import pandas as pd

    if isinstance(source, TableSource):
        from modelhost.store.feature_tables import MissingColumnsError, read_table

        if database is None:
            raise InvalidInputError(f"the table {source.table!r} is read from the offline "
                                    "database: read it through Client().features")
        try:
            return read_table(database, source.table, columns)
        except MissingColumnsError as exc:
            raise _MissingColumnsError(exc.columns) from None
    files = _files(source.path)
    frames = [_read(fs, path, columns) for fs, path in files]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def read_view(view: FeatureView, join_keys: Sequence[str], *,
              database: str | None = None) -> Any:
    """The columns of ``view`` its source must hold (keys, times, features), checked."""
    source = view.source
    wanted = [*join_keys, source.timestamp_field,
              *([source.created_timestamp_column] if source.created_timestamp_column else []),
              *(f.name for f in view.schema)]
    try:
        return read_source(source, columns=list(dict.fromkeys(wanted)), database=database)
    except _MissingColumnsError as exc:
        raise InvalidInputError(f"feature view {view.name!r}: its source has no column(s) "
                                f"{', '.join(map(repr, exc.columns))}") from None


class _MissingColumnsError(Exception):
    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.columns = columns


def _files(path: str) -> list[tuple[Any, str]]:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(path)
        if any(c in root for c in "*?["):
            found = sorted(fs.glob(root))
        elif fs.isdir(root):
            found = sorted(p for p in fs.find(root) if p.lower().endswith(_FORMATS))
        else:
            found = [root] if fs.exists(root) else []
    except (OSError, ValueError, ImportError) as exc:
        raise InvalidInputError(f"cannot read the source {path!r}: "
                                f"{type(exc).__name__}") from None
    found = [p for p in found if p.lower().endswith(_FORMATS)]
    if not found:
        raise FileNotFoundInputError(path)
    return [(fs, p) for p in found]


def _read(fs: Any, path: str, columns: Sequence[str] | None) -> Any:
    import pandas as pd

    with fs.open(path, "rb") as handle:
        if path.lower().endswith(".csv"):
            frame = pd.read_csv(handle)
        else:
            try:
                import pyarrow.parquet as pq  # type: ignore[import-untyped]
            except ImportError:
                raise MissingDependencyError("Parquet feature sources", "parquet") from None

            names = pq.read_schema(handle).names
            handle.seek(0)
            missing = [c for c in columns or () if c not in names]
            if missing:
                raise _MissingColumnsError(missing)
            return pd.read_parquet(handle, columns=list(columns) if columns else None)
    missing = [c for c in columns or () if c not in frame.columns]
    if missing:
        raise _MissingColumnsError(missing)
    return frame[list(columns)] if columns else frame
