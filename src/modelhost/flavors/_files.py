"""File system helpers shared by the flavors: staging, safe names, safe copies, messages."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from modelhost.errors import FileNotFoundInputError, ModelLoadError, PathEscapeError

# Absolute POSIX paths (not preceded by a word character, so "1/2" survives) and Windows
# drive paths. Error messages travel to HTTP clients and logs: they must not reveal where
# the server keeps its files.
_PATHS = re.compile(r"(?<![\w.])/[^\s'\"]+|\b[A-Za-z]:\\[^\s'\"]*")
_REASON_LIMIT = 300


def reason(exc: BaseException, message: str | None = None) -> str:
    """A one-line, path-free description of ``exc`` (or of ``message`` about it)."""
    raw = (str(exc) if message is None else message).strip()
    text = raw.splitlines()[0] if raw else ""
    text = _PATHS.sub("<path>", text)
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def load_failed(what: str, exc: BaseException) -> ModelLoadError:
    """The ``ModelLoadError`` for ``exc`` raised while loading ``what``."""
    return ModelLoadError(what, reason(exc))


def require_source(src: Path) -> None:
    """The user's model path must exist (their own path may appear in the message)."""
    if not src.exists():
        raise FileNotFoundInputError(str(src))


def read_bytes(file: Path, *, what: str) -> bytes:
    """The file's content; I/O errors become a path-free ``ModelLoadError``."""
    try:
        return file.read_bytes()
    except OSError as exc:
        raise load_failed(what, exc) from exc


@contextlib.contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """Write into ``dest``; if the block fails, remove whatever it added.

    Callers promise "dest is left as it was" on failure; this keeps that promise without
    a second temporary folder (``dest`` may live on another file system).
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = {entry.name for entry in dest.iterdir()}
    try:
        yield dest
    except BaseException:
        for entry in dest.iterdir():
            if entry.name in before:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        raise


def child(folder: Path, relative: object, *, what: str) -> Path:
    """The regular file ``relative`` inside ``folder``, refusing escapes and links.

    ``relative`` comes from metadata (``meta`` or an MLmodel file), so it is checked like
    user input: a relative POSIX path without ``..`` whose every part is a real file or
    folder inside ``folder``.

    Raises:
        PathEscapeError: absolute, ``..``, or passing through a symbolic link.
        ModelLoadError: no such regular file.
    """
    if not isinstance(relative, str) or not relative:
        raise ModelLoadError(what, f"its metadata names no model file (got {relative!r})")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relative or ":" in relative:
        raise PathEscapeError(relative)
    current = folder
    for part in pure.parts:
        if part == ".":
            continue
        current = current / part
        if current.is_symlink():
            raise PathEscapeError(relative)
    if not current.is_file():
        raise ModelLoadError(what, f"the file {relative!r} is missing from the model")
    return current


def copy_tree(src: Path, dest: Path, *, what: str) -> None:
    """Copy the regular files and folders under ``src`` into ``dest``.

    Symbolic links are refused rather than followed or copied: a link can point anywhere
    on the registering machine, and the stored artifact must be self-contained.

    Raises:
        PathEscapeError: a symbolic link somewhere under ``src``.
        ModelLoadError: a special file (socket, device, fifo) under ``src``.
    """
    check_tree(src, what=what)
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        for name in sorted(dirs):
            (dest / rel / name).mkdir(exist_ok=True)
        for name in sorted(files):
            shutil.copyfile(Path(root) / name, dest / rel / name, follow_symlinks=False)


def check_tree(src: Path, *, what: str) -> None:
    """Refuse symbolic links and special files anywhere under ``src``."""
    for root, dirs, files in os.walk(src):
        for name in [*dirs, *files]:
            path = Path(root) / name
            rel = path.relative_to(src).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise PathEscapeError(rel)
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ModelLoadError(what, f"{rel!r} is not a regular file or folder")
