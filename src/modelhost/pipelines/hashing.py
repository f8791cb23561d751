"""Content hashes for the step cache: files, folders and JSON values."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(path: Path) -> str:
    """A file's sha256, or for a folder the sha256 of its sorted (relative path, file
    sha256) pairs, so that the digest depends on content and names, never on times."""
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(file_digest(file).encode("ascii") + b"\n")
    return digest.hexdigest()


def json_digest(value: Any) -> str:
    """The sha256 of ``value`` as canonical JSON (sorted keys; other types as text)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def combine(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


__all__ = ["combine", "file_digest", "json_digest", "tree_digest"]
