"""The pieces of a batch run's input: CSV byte ranges read every line exactly once,
whatever the cut; Parquet files are listed and their row groups read one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelhost.batch.pieces import (
    Piece,
    csv_pieces,
    input_format,
    iter_piece,
    list_files,
    parquet_pieces,
    read_piece,
    row_group_count,
)
from modelhost.errors import InvalidInputError


def csv_file(path: Path, rows: int, *, newline: str = "\n", final: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.integers(0, 10 ** rng.integers(1, 9, rows)).astype(str),
                          "b": [("x" * int(n)) or "y" for n in rng.integers(0, 40, rows)]})
    text = newline.join(["a,b", *(f"{a},{b}" for a, b in zip(frame["a"], frame["b"],
                                                          strict=True))])
    path.write_bytes((text + (newline if final else "")).encode())
    return frame


def ranges(path: Path, block: int) -> list[Piece]:
    size = path.stat().st_size
    return [Piece(str(path), "csv", offset=start, length=min(block, size - start))
            for start in range(0, size, block)]


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1000, 1 << 20])
@pytest.mark.parametrize(("newline", "final"), [("\n", True), ("\n", False),
                                                ("\r\n", True)])
def test_csv_ranges_read_every_line_once(tmp_path: Path, block: int, newline: str,
                                         final: bool) -> None:
    path = tmp_path / "rows.csv"
    expected = csv_file(path, 60, newline=newline, final=final)
    parts = [read_piece(piece, {}) for piece in ranges(path, block)]
    assert all(list(p.columns) == ["a", "b"] for p in parts)
    got = pd.concat(parts, ignore_index=True)
    assert got["a"].tolist() == expected["a"].tolist()
    assert got["b"].str.rstrip("\r").tolist() == expected["b"].tolist()


def test_csv_pieces_cut_by_rows_and_at_least_a_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    csv_file(path, 60_000)
    size = path.stat().st_size
    fs, files = list_files(str(path), "csv", {})
    assert files == [str(path)]
    one = csv_pieces(fs, files, 10)  # 10 rows' bytes: raised to 1 MiB
    assert [p.length for p in one] == [min(1 << 20, size - p.offset) for p in one]
    assert sum(p.length for p in one) == size
    many = csv_pieces(fs, files, 100_000_000)
    assert len(many) == 1 and many[0].length == size


def test_files_of_a_folder_a_glob_and_nothing(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "notes.txt", "_SUCCESS", ".hidden.csv",
                 "sub/c.csv", "_temporary/d.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n1\n")
    _, found = list_files(str(tmp_path), "csv", {})
    assert [Path(p).relative_to(tmp_path).as_posix() for p in found] == [
        "a.csv", "b.csv", "sub/c.csv"]
    _, found = list_files(str(tmp_path / "*.csv"), "csv", {})
    assert [Path(p).name for p in found] == ["a.csv", "b.csv"]
    with pytest.raises(InvalidInputError, match="no file matches"):
        list_files(str(tmp_path / "none-*.csv"), "csv", {})
    with pytest.raises(InvalidInputError, match=r"CSV .* or Parquet"):
        input_format(str(tmp_path / "notes.txt"))


def test_parquet_row_groups_are_pieces(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(1000.0), "y": np.arange(1000) % 7})
    frame.to_parquet(tmp_path / "a.parquet", row_group_size=300)
    frame.head(10).to_parquet(tmp_path / "b.parquet")
    _, files = list_files(str(tmp_path), "parquet", {})
    counts = [row_group_count(f, {}) for f in files]
    assert counts == [4, 1]
    pieces = parquet_pieces(files, counts)
    assert [(Path(p.path).name, p.row_group) for p in pieces] == [
        ("a.parquet", 0), ("a.parquet", 1), ("a.parquet", 2), ("a.parquet", 3),
        ("b.parquet", 0)]
    got = pd.concat([read_piece(p, {}) for p in pieces], ignore_index=True)
    pd.testing.assert_frame_equal(got, pd.concat([frame, frame.head(10)],
                                                 ignore_index=True))


def test_the_first_rows_of_a_piece(tmp_path: Path) -> None:
    """The output's types come from a piece's first rows: only those are read."""
    frame = pd.DataFrame({"x": np.arange(1000.0), "y": np.arange(1000) % 7})
    frame.to_parquet(tmp_path / "a.parquet", row_group_size=300)
    frame.head(0).to_parquet(tmp_path / "empty.parquet")
    frame.to_csv(tmp_path / "a.csv", index=False)
    second = Piece(str(tmp_path / "a.parquet"), "parquet", row_group=1)
    pd.testing.assert_frame_equal(read_piece(second, {}, head=5),
                                  frame.iloc[300:305].reset_index(drop=True))
    last = Piece(str(tmp_path / "a.parquet"), "parquet", row_group=3)
    assert len(read_piece(last, {}, head=500)) == 100
    empty = read_piece(Piece(str(tmp_path / "empty.parquet"), "parquet"), {}, head=5)
    assert len(empty) == 0 and list(empty.columns) == ["x", "y"]
    text = read_piece(Piece(str(tmp_path / "a.csv"), "csv", offset=0, length=1 << 20),
                      {}, head=3)
    assert text.to_dict("list") == {"x": ["0.0", "1.0", "2.0"], "y": ["0", "1", "2"]}


def test_a_piece_is_read_in_chunks_of_the_model_calls(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(1000.0), "y": np.arange(1000) % 7})
    frame.to_parquet(tmp_path / "a.parquet", row_group_size=700)
    frame.to_csv(tmp_path / "a.csv", index=False)
    group = Piece(str(tmp_path / "a.parquet"), "parquet", row_group=0)
    chunks = list(iter_piece(group, {}, 300))
    assert [len(c) for c in chunks] == [300, 300, 100]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), frame.head(700))
    whole = Piece(str(tmp_path / "a.csv"), "csv", offset=0, length=1 << 20)
    chunks = list(iter_piece(whole, {}, 300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert pd.concat(chunks, ignore_index=True).astype({"x": float, "y": int}).equals(frame)
