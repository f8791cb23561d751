"""The pieces a batch run reads: Parquet row groups and CSV byte ranges.

The driver lists the input's files and cuts CSV files into byte ranges; the workers
count Parquet files' row groups and read each piece themselves, so that reading,
scoring and writing a piece is one task on one worker and no rows cross the network.
A CSV range starts after the first line break at or after its offset (the first range
at the file's start) and ends at the first line break at or after its end, as Dask's
own ``read_csv`` cuts them: a line is read by exactly one range. As there, a quoted
value that holds a line break can be cut in two; such files want one range per file
(a ``--partition-rows`` larger than the file).
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelhost.errors import InvalidInputError

_GLOB = frozenset("*?[")
_HIDDEN = (".", "_")  # Parquet's own convention: _metadata, _SUCCESS, .crc files


@dataclass(frozen=True)
class Piece:
    """One task's share of the input: a Parquet file's row group, or a CSV file's
    bytes ``[offset, offset + length)`` (cut at line breaks)."""

    path: str
    fmt: str
    row_group: int = 0
    offset: int = 0
    length: int = 0


def input_format(uri: str) -> str:
    lowered = uri.lower().rstrip("/")
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".parquet", ".pq")) or "." not in lowered.rsplit("/", 1)[-1]:
        return "parquet"  # a file, or a folder of Parquet files
    raise InvalidInputError(f"the input must be CSV (.csv) or Parquet (.parquet, or a "
                            f"folder of them), got {uri[:120]!r}")


def list_files(uri: str, fmt: str, options: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The file system of ``uri`` and its files, in order: the file itself, a glob's
    matches, or a folder's files (recursively and, for CSV, only ``.csv``); names that
    start with ``.`` or ``_`` are left out of globs and folders (Parquet's convention
    for ``_SUCCESS``, ``_metadata`` and files being written)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **options)
    if _GLOB & set(path):
        found = [p for p in fs.glob(path)
                 if not posixpath.basename(p).startswith(_HIDDEN) and fs.isfile(p)]
    elif fs.isdir(path):
        found = [p for p in fs.find(path)
                 if not any(part.startswith(_HIDDEN)
                            for part in posixpath.relpath(p, path).split("/"))
                 and (fmt != "csv" or p.lower().endswith(".csv"))]
    elif fs.isfile(path):
        found = [path]
    else:
        found = []
    if not found:
        raise InvalidInputError(f"no file matches {uri[:120]!r}")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):  # listings drop it: the workers need it
        found = [fs.unstrip_protocol(p) for p in found]
    return fs, sorted(found)


def csv_pieces(fs: Any, files: list[str], partition_rows: int) -> list[Piece]:
    """Ranges of about ``partition_rows`` rows' bytes (judged from the first file's
    first lines), at least 1 MiB each."""
    with fs.open(files[0], "rb") as f:
        head: bytes = f.read(1 << 16)
    per_row = max(1, len(head) // max(1, head.count(b"\n")))
    block = max(1 << 20, partition_rows * per_row)
    pieces = []
    for path in files:
        size = int(fs.size(path))
        pieces += [Piece(path, "csv", offset=start, length=min(block, size - start))
                   for start in range(0, max(size, 1), block)]
    return pieces


def parquet_pieces(files: list[str], row_groups: list[int]) -> list[Piece]:
    return [Piece(path, "parquet", row_group=group)
            for path, count in zip(files, row_groups, strict=True)
            for group in range(count)]


# --- on the workers ---------------------------------------------------------------------


def row_group_count(path: str, options: Mapping[str, Any]) -> int:
    import fsspec
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    fs, _ = fsspec.core.url_to_fs(path, **options)
    with fs.open(path, "rb") as f:
        return int(pq.ParquetFile(f).metadata.num_row_groups)


def iter_piece(piece: Piece, options: Mapping[str, Any], rows: int) -> Iterator[Any]:
    """The piece's rows in DataFrames of at most ``rows`` rows, read as they are
    scored: a worker holds one model call's rows at a time, not a whole row group
    (Parquet files hold row groups of a million rows and more)."""
    import fsspec
    import pandas as pd

    fs, _ = fsspec.core.url_to_fs(piece.path, **options)
    with fs.open(piece.path, "rb") as f:
        if piece.fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(f).iter_batches(batch_size=rows,
                                                        row_groups=[piece.row_group]):
                yield batch.to_pandas()
            return
        header = f.readline()
        data = _csv_range(f, piece.offset, piece.length, len(header))
    with pd.read_csv(io.BytesIO(header + data), dtype=str, keep_default_na=True,
                     chunksize=rows) as chunks:
        yield from chunks


def read_piece(piece: Piece, options: Mapping[str, Any], head: int | None = None) -> Any:
    """The piece's rows as a DataFrame, or its first ``head`` rows: Parquet with its
    own types, CSV as text (the signature's numbers are turned back into numbers per
    row, so that a bad value refuses its row, not its column)."""
    import fsspec
    import pandas as pd

    fs, _ = fsspec.core.url_to_fs(piece.path, **options)
    with fs.open(piece.path, "rb") as f:
        if piece.fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(f)
            if head is None:
                return parquet.read_row_group(piece.row_group).to_pandas()
            first = next(parquet.iter_batches(batch_size=head,
                                              row_groups=[piece.row_group]), None)
            return (first.to_pandas() if first is not None
                    else parquet.schema_arrow.empty_table().to_pandas())
        header = f.readline()
        data = _csv_range(f, piece.offset, piece.length, len(header))
    return pd.read_csv(io.BytesIO(header + data), dtype=str, keep_default_na=True,
                       nrows=head)


def _csv_range(f: Any, offset: int, length: int, header_size: int) -> bytes:
    """The whole lines that start in ``[offset, offset + length)``, the header's
    excepted. A line starts at the file's first byte after the header, or after a line
    break."""
    start = max(offset, header_size)
    if start > header_size:  # inside the file: the line in progress belongs before
        f.seek(start - 1)
        start += len(f.readline()) - 1
    end = offset + length
    if start >= end:
        return b""
    f.seek(start)
    data: bytes = f.read(end - start)
    if data and not data.endswith(b"\n"):
        data += f.readline()  # the line that starts inside the range, whole
    return data
