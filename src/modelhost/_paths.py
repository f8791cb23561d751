"""The one path validator behind every file and artifact access. Standard library only.

Every relative path that reaches a filesystem or an object store (artifact keys, tree
manifest entries, archive members) goes through :func:`safe_relpath`; every path that is
joined onto a local folder goes through :func:`confined_path`. Keeping the rules in one
place means a trick refused here is refused everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

from modelhost.errors import PathEscapeError

__all__ = ["confined_path", "safe_relpath"]

# Enough for any honest name; a name that still changes after this many rounds of
# percent-decoding is an attack (or garbage) either way.
_MAX_DECODE_ROUNDS = 16
# "C:", "c:x" — a Windows drive, absolute or drive-relative.
_DRIVE = re.compile(r"^[A-Za-z]:")
# Cc controls (NUL, newline, ESC...), Cf invisible format characters (bidi overrides,
# zero-width joiners) that make a name look like another, Cs lone surrogates.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def _readings(relative: str) -> list[str]:
    """Every way a downstream layer might read ``relative``: as given, then each round of
    percent-decoding and NFKC normalisation until the text stops changing."""
    readings = [relative]
    text = relative
    for _ in range(_MAX_DECODE_ROUNDS):
        try:
            # errors="strict": percent-escapes that are not UTF-8 are refused rather
            # than silently turned into U+FFFD, which would hide what they spelled.
            decoded = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise PathEscapeError(relative) from None
        decoded = unicodedata.normalize("NFKC", decoded)
        if decoded == text:
            return readings
        readings.append(decoded)
        text = decoded
    raise PathEscapeError(relative)


def _check_reading(reading: str, original: str) -> None:
    if not reading:
        raise PathEscapeError(original)
    if "\\" in reading:
        # A separator on Windows and in many archive tools; never part of a safe name.
        raise PathEscapeError(original)
    if any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in reading):
        raise PathEscapeError(original)
    if reading.startswith("/") or _DRIVE.match(reading):
        raise PathEscapeError(original)
    if any(segment == ".." for segment in reading.split("/")):
        raise PathEscapeError(original)


def safe_relpath(relative: str) -> str:
    """Validate a relative POSIX path and return it normalised.

    The checks run on the path as given *and* on every reading of it after repeated
    percent-decoding and NFKC normalisation, so ``%2e%2e/x``, ``%252e%252e/x`` and
    fullwidth ``．．／x`` are caught like ``../x``.

    Args:
        relative: A path such as ``"weights/model.onnx"``.

    Returns:
        The path with empty and ``.`` segments removed (``"./a//b/"`` becomes ``"a/b"``).
        The characters themselves are returned as given, not decoded: a file really named
        ``100%25.txt`` keeps its name, because decoding is only used to *refuse*.

    Raises:
        PathEscapeError: The path is not a string, is empty (or only ``.`` segments),
            is absolute (``/x``, ``C:\\x``, ``\\\\server``), contains a backslash, a
            control or invisible format character, a ``..`` segment in any reading, or
            percent-escapes that are not UTF-8.
    """
    if not isinstance(relative, str):
        raise PathEscapeError(repr(relative))
    for reading in _readings(relative):
        _check_reading(reading, relative)
    segments = [segment for segment in relative.split("/") if segment not in ("", ".")]
    if not segments:
        raise PathEscapeError(relative)
    return "/".join(segments)


def confined_path(root: Path, relative: str) -> Path:
    """Join ``relative`` onto ``root`` and prove the result stays inside ``root``.

    ``root`` itself may be (or sit under) a symlink: it is the caller's choice. Below it,
    no existing component of the joined path (including the target) may be a symlink,
    and the fully resolved target must lie inside ``root.resolve()``. Components that do
    not exist yet are fine, so this also validates paths about to be created.

    Args:
        root: The folder everything must stay in. It need not exist.
        relative: A path accepted by :func:`safe_relpath`.

    Returns:
        ``root / safe_relpath(relative)`` (not resolved, so callers keep their spelling).

    Raises:
        PathEscapeError: ``relative`` fails :func:`safe_relpath`, a component below
            ``root`` is a symlink, or the resolved target leaves ``root``.
    """
    clean = safe_relpath(relative)
    current = root
    for segment in clean.split("/"):
        current = current / segment
        # is_symlink() uses lstat and is False for paths that do not exist yet.
        if current.is_symlink():
            raise PathEscapeError(relative)
    target = root / clean
    resolved_root = root.resolve(strict=False)
    resolved = target.resolve(strict=False)
    # Equal to the root is refused too: a key must name something *inside* it.
    if resolved == resolved_root or not resolved.is_relative_to(resolved_root):
        raise PathEscapeError(relative)
    return target
