"""Unpacking uploaded models safely: archives and multipart folders.

Every member name goes through :func:`~modelhost._paths.safe_relpath` and every write
through :func:`~modelhost._paths.confined_path`; links, devices and FIFOs are refused
(not skipped: an archive that holds one is not what it claims to be); the number of files
and the bytes *actually written* are bounded, so a decompression bomb stops at the limit
whatever sizes its headers declare; and a name may appear only once. Nothing from an
archive is executed or deserialised here: loading is the flavor's job, with its own
trust rules (pickles only with the server's trust flag).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modelhost._paths import confined_path, safe_relpath
from modelhost.errors import InvalidInputError, PathEscapeError, PayloadTooLargeError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 1 << 30  # unpacked, all files together
    max_files: int = 10_000


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


class _Budget:
    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.bytes = 0
        self.files = 0
        self.seen: set[str] = set()

    def claim(self, name: str) -> str:
        clean = safe_relpath(name)
        if clean.lower() in self.seen:  # also catches case-only twins
            raise InvalidInputError(f"the upload holds {clean!r} twice")
        self.seen.add(clean.lower())
        self.files += 1
        if self.files > self.limits.max_files:
            raise PayloadTooLargeError("the upload", self.limits.max_files, "files")
        return clean

    def copy(self, source: IO[bytes], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as out:  # exclusive: never through an existing name
            while chunk := source.read(_CHUNK):
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_bytes:
                    raise PayloadTooLargeError("the unpacked upload", self.limits.max_bytes,
                                               "bytes")
                out.write(chunk)


def write_files(parts: Iterable[tuple[str, IO[bytes]]], dest: Path, *,
                limits: UploadLimits = UploadLimits()) -> Path:
    """Write uploaded files under ``dest`` by their relative names (a folder upload);
    return ``dest``."""
    budget = _Budget(limits)
    for name, stream in parts:
        budget.copy(stream, confined_path(dest, budget.claim(name)))
    if budget.files == 0:
        raise InvalidInputError("the upload holds no files")
    return dest


def unpack_archive(archive: Path, dest: Path, *,
                   limits: UploadLimits = UploadLimits()) -> Path:
    """Unpack a tar (plain, gz, bz2, xz) or zip archive into ``dest``; return the model's
    folder (``dest``, or its only top-level folder when everything sits in one)."""
    budget = _Budget(limits)
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, dest, budget)
        else:
            _untar(archive, dest, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileExistsError):
            raise InvalidInputError("the archive holds a file twice") from None
        raise InvalidInputError("the upload is not a readable tar or zip archive") from exc
    if budget.files == 0:
        raise InvalidInputError("the archive holds no files")
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest


def _untar(archive: Path, dest: Path, budget: _Budget) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            if member.isdir():
                safe_relpath(member.name)
                continue
            if not member.isfile():  # symlink, hard link, device, FIFO
                raise PathEscapeError(member.name)
            target = confined_path(dest, budget.claim(member.name))
            source = tar.extractfile(member)
            if source is None:
                raise PathEscapeError(member.name)
            with source:
                budget.copy(source, target)


def _unzip(archive: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            # Unix mode bits in the upper half of external_attr: refuse links and
            # special files, which zip can carry too.
            mode = (info.external_attr >> 16) & 0o170000
            if info.is_dir():
                safe_relpath(info.filename)
                continue
            if mode not in (0, 0o100000):
                raise PathEscapeError(info.filename)
            target = confined_path(dest, budget.claim(info.filename))
            with zf.open(info) as source:
                budget.copy(source, target)


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
