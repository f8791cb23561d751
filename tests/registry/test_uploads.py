"""Unpacking uploads: every trick refused, bombs stopped at the limit, nothing left over."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from modelhost.errors import InvalidInputError, PathEscapeError, PayloadTooLargeError
from modelhost.registry.uploads import UploadLimits, unpack_archive, write_files

HOSTILE_NAMES = [
    "../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "%2e%2e/evil.txt",
    "%252e%252e%252fevil.txt", "..%5cevil.txt", "\uff0e\uff0e\uff0fevil.txt",
    "C:/evil.txt", "\\\\host\\share\\evil.txt", "ok/\x00evil.txt", "a\u202eb.txt",
]


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]],
         mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_a_tar_of_a_folder_unpacks_to_that_folder(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tgz", [_file("model/MLmodel", b"flavors: {}"),
                                         _file("model/data/w.bin", b"123")])
    root = unpack_archive(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "model"
    assert (root / "data" / "w.bin").read_bytes() == b"123"


def test_a_zip_unpacks(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "m.zip", [("model.onnx", b"onnx"), ("notes/readme.md", b"hi")])
    root = unpack_archive(archive, tmp_path / "out")
    assert _listing(root) == ["model.onnx", "notes", "notes/readme.md"]


# tar and zip cut a name at NUL (the archive then holds a folder "ok/"): NUL is a
# hostile name only where names arrive as text, in folder uploads.
@pytest.mark.parametrize(("kind", "name"), [
    (kind, name) for kind in ("tar", "zip", "files") for name in HOSTILE_NAMES
    if kind == "files" or "\x00" not in name])
def test_hostile_names_are_refused_and_nothing_escapes(tmp_path: Path, name: str,
                                                       kind: str) -> None:
    out = tmp_path / "deep" / "out"

    def upload() -> None:
        if kind == "tar":
            unpack_archive(_tar(tmp_path / "m.tgz", [_file("ok.txt"), _file(name)]), out)
        elif kind == "zip":
            unpack_archive(_zip(tmp_path / "m.zip", [("ok.txt", b"x"), (name, b"x")]), out)
        else:
            write_files([("ok.txt", io.BytesIO(b"x")), (name, io.BytesIO(b"x"))], out)

    with pytest.raises(PathEscapeError):
        upload()
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE])
def test_links_and_special_files_in_a_tar_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("model/link")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = _tar(tmp_path / "m.tgz", [_file("model/a.txt"), (link, None)])
    with pytest.raises(PathEscapeError):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "model" / "link").exists()


def test_a_symlink_in_a_zip_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(PathEscapeError):
        unpack_archive(archive, tmp_path / "out")


def test_a_decompression_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    zeros = b"\0" * (4 << 20)
    limits = UploadLimits(max_bytes=1 << 20)
    for archive in (_zip(tmp_path / "bomb.zip", [("a.bin", zeros)]),
                    _tar(tmp_path / "bomb.tgz", [_file("a.bin", zeros)])):
        assert archive.stat().st_size < 64 << 10
        out = tmp_path / f"out-{archive.name}"
        with pytest.raises(PayloadTooLargeError):
            unpack_archive(archive, out, limits=limits)
        assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) <= 1 << 20


def test_too_many_files(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(11)])
    with pytest.raises(PayloadTooLargeError, match="10 files"):
        unpack_archive(archive, tmp_path / "out", limits=UploadLimits(max_files=10))


@pytest.mark.parametrize("names", [["a.txt", "a.txt"], ["A.txt", "a.txt"], ["x/a", "x//a"]])
def test_a_name_twice_is_refused(tmp_path: Path, names: list[str]) -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        write_files([(n, io.BytesIO(b"x")) for n in names], tmp_path / "out")


def test_not_an_archive_and_empty_uploads(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"this is not an archive")
    with pytest.raises(InvalidInputError, match="not a readable"):
        unpack_archive(junk, tmp_path / "out")
    with pytest.raises(InvalidInputError, match="no files"):
        unpack_archive(_zip(tmp_path / "empty.zip", []), tmp_path / "out2")
    with pytest.raises(InvalidInputError, match="no files"):
        write_files([], tmp_path / "out3")
