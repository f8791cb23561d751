"""Artifact store on a local (or mounted) filesystem."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from modelhost._paths import confined_path, safe_relpath
from modelhost.artifacts.base import ArtifactStore, fsync_folder, store_unavailable
from modelhost.errors import (
    ArtifactMissingError,
    InvalidInputError,
    PathEscapeError,
    StoreUnavailableError,
)

__all__ = ["LocalArtifactStore"]

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# Temporary files start with this; listings skip it, so half-written blobs are invisible.
_TEMP_PREFIX = ".tmp-"
# Errors meaning "this filesystem has no hard links" (FAT, some network mounts); the
# store then falls back to check-then-replace.
_NO_HARD_LINKS = frozenset(
    code
    for code in (
        errno.EPERM,
        errno.EMLINK,
        errno.ENOSYS,
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
    )
    if code is not None
)


class LocalArtifactStore(ArtifactStore):
    """Blobs as files under ``root``.

    Every key is joined through :func:`modelhost._paths.confined_path`, and blobs that
    are links are refused. A write goes to a temporary file in the blob's folder, is
    fsynced, then appears under its final name in one step (a hard link, which also
    makes creation exclusive, or ``os.replace``). Blob files are read-only (0444).
    Folders are created on first write; the constructor touches nothing.

    Args:
        root: The store's folder. It need not exist yet.
    """

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root)

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> LocalArtifactStore:
        """Build a store from a plain path (``~`` expanded) or a ``file://`` URL.

        Raises:
            InvalidInputError: A ``file://`` URL naming another host.
        """
        if "://" not in uri:
            return cls(Path(uri).expanduser(), **options)
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise InvalidInputError(
                f"artifact location {uri!r} names host {parts.netloc!r}; a file:// URL "
                "must be local, e.g. 'file:///var/lib/modelhost/artifacts'"
            )
        return cls(Path(url2pathname(unquote(parts.path))), **options)

    @property
    def root(self) -> Path:
        """The folder blobs are stored under."""
        return self._root

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._root)!r})"

    # --- primitives --------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        try:
            return confined_path(self._root, key)
        except OSError as exc:
            raise store_unavailable(exc) from exc

    def _read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            # O_NOFOLLOW closes the gap between confined_path's check and the open.
            fd = os.open(path, os.O_RDONLY | _O_BINARY | _O_NOFOLLOW | _O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactMissingError(key.rsplit("/", 1)[-1]) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathEscapeError(key) from None
            raise store_unavailable(exc) from exc
        try:
            with open(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise _not_a_blob()
                return handle.read()
        except OSError as exc:
            raise store_unavailable(exc) from exc

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            temp = self._write_temp(path.parent, data)
            try:
                temp.replace(path)
            except BaseException:
                _remove_quietly(temp)
                raise
            fsync_folder(path.parent)
        except OSError as exc:
            raise store_unavailable(exc) from exc

    def _create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            temp = self._write_temp(path.parent, data)
            try:
                created = _link_into_place(temp, path)
            finally:
                _remove_quietly(temp)
            if created:
                fsync_folder(path.parent)
        except OSError as exc:
            raise store_unavailable(exc) from exc
        return created

    def _exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise store_unavailable(exc) from exc
        return stat.S_ISREG(mode)

    def _modified(self, key: str) -> float | None:
        try:
            return os.lstat(self._path(key)).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise store_unavailable(exc) from exc

    def _touch(self, key: str) -> None:
        with contextlib.suppress(OSError):  # best effort: the blob is intact either way
            os.utime(self._path(key))

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise store_unavailable(exc) from exc

    def _list(self, prefix: str) -> Iterator[str]:
        clean = safe_relpath(prefix)
        yield from _walk(self._path(clean), clean)

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _write_temp(folder: Path, data: bytes) -> Path:
        """Write ``data`` to a new, fsynced temporary file in ``folder`` (same
        filesystem as the final name, so the rename is atomic)."""
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW | _O_CLOEXEC
        # 0444 like git objects: blobs are immutable, and the umask still applies.
        fd = os.open(temp, flags, 0o444)
        try:
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            _remove_quietly(temp)
            raise
        return temp


def _link_into_place(temp: Path, path: Path) -> bool:
    """Give ``temp`` the name ``path`` unless it exists; True if this call did."""
    try:
        # link() fails if the name exists, so of many racing writers exactly one wins.
        os.link(temp, path)
    except FileExistsError:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise _not_a_blob() from None
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(path):
            return False
        temp.replace(path)
    return True


def _walk(folder: Path, key_prefix: str) -> Iterator[str]:
    try:
        with os.scandir(folder) as scan:
            children = sorted(scan, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise store_unavailable(exc) from exc
    for child in children:
        if child.name.startswith("."):
            continue
        key = f"{key_prefix}/{child.name}"
        try:
            is_dir = child.is_dir(follow_symlinks=False)
            is_file = child.is_file(follow_symlinks=False)
        except OSError as exc:
            raise store_unavailable(exc) from exc
        if is_dir:
            yield from _walk(Path(child.path), key)
        elif is_file:
            yield key


def _remove_quietly(path: Path) -> None:
    # Best effort: a stray temp file is invisible to readers and listings.
    with contextlib.suppress(OSError):
        path.unlink()


def _not_a_blob() -> StoreUnavailableError:
    return StoreUnavailableError(
        "artifact store", "a blob's path holds something that is not a regular file"
    )
