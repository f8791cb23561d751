"""Content-addressed artifact storage, chosen by URI scheme.

>>> store = open_artifact_store("/var/lib/modelhost/artifacts")   # doctest: +SKIP
>>> store = open_artifact_store("s3://bucket/prefix", storage_options={...})  # doctest: +SKIP

Backends are registered as ``"module:Class"`` strings and imported only when a store
of that scheme is opened, so optional dependencies stay optional.
"""

from __future__ import annotations

import importlib
from typing import Any

from modelhost.artifacts.base import ArtifactStore, PutResult, TreeResult
from modelhost.artifacts.local import LocalArtifactStore
from modelhost.errors import InvalidInputError

__all__ = [
    "ArtifactStore",
    "LocalArtifactStore",
    "PutResult",
    "TreeResult",
    "UnknownArtifactSchemeError",
    "open_artifact_store",
]

_FSSPEC = "modelhost.artifacts.fsspec_store:FsspecArtifactStore"

# scheme -> "module:Class". Plain paths (no "://") use "file".
_BACKENDS: dict[str, str] = {
    "file": "modelhost.artifacts.local:LocalArtifactStore",
    "memory": _FSSPEC,
    "s3": _FSSPEC,
    "s3a": _FSSPEC,
    "gs": _FSSPEC,
    "gcs": _FSSPEC,
    "az": _FSSPEC,
    "abfs": _FSSPEC,
    "abfss": _FSSPEC,
}

# Shown with every unknown-scheme error, so the fix is one copy-paste away.
_INSTALL_HINTS = ("Install 'modelhost[s3]' for S3.",)


class UnknownArtifactSchemeError(InvalidInputError):
    """An artifact location whose URI scheme no backend is registered for."""

    def __init__(self, scheme: str, registered: list[str]) -> None:
        super().__init__(
            f"Unknown artifact scheme {scheme!r}. Registered: {', '.join(registered)}. "
            + " ".join(_INSTALL_HINTS)
        )
        self.scheme = scheme


def open_artifact_store(uri: str, **options: Any) -> ArtifactStore:
    """Open the artifact store at ``uri``. No I/O happens until the store is used.

    Args:
        uri: A plain path or ``file://`` URL (local store), or an fsspec URL such as
            ``s3://bucket/prefix`` or ``memory://name``.
        **options: Keyword arguments for the backend, e.g. ``storage_options={...}``
            for fsspec URLs.

    Returns:
        The store.

    Raises:
        InvalidInputError: ``uri`` is empty or not a string.
        UnknownArtifactSchemeError: No backend handles the scheme.
        MissingDependencyError: Raised on first use if the backend's package is missing.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(
            f"artifact location {uri!r} is empty; give a folder or a URL such as "
            "'s3://bucket/prefix'"
        )
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    target = _BACKENDS.get(scheme)
    if target is None:
        raise UnknownArtifactSchemeError(scheme, sorted(_BACKENDS))
    module_name, _, class_name = target.partition(":")
    backend: type[ArtifactStore] = getattr(importlib.import_module(module_name), class_name)
    return backend.from_uri(uri, **options)
