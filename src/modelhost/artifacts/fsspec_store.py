"""Artifact store on any fsspec filesystem: S3, GCS, Azure, in-memory...

fsspec and its backends (s3fs, gcsfs, adlfs) are imported on first use, never at import
time, so the base install carries none of them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from modelhost._paths import safe_relpath
from modelhost.artifacts.base import ArtifactStore, store_unavailable
from modelhost.errors import (
    ArtifactMissingError,
    InvalidInputError,
    MissingDependencyError,
    ModelhostError,
    StoreUnavailableError,
)

__all__ = ["FsspecArtifactStore"]

# Schemes whose backend ships with a modelhost extra; others get fsspec's own hint.
_EXTRAS = {"s3": "s3", "s3a": "s3"}


@functools.cache
def backend_errors() -> tuple[type[BaseException], ...]:
    """The foreign exceptions that mean "the store failed" (not "no such object").

    s3fs turns most S3 error responses into OSError, but connection, credential and
    transport failures arrive as botocore or aiohttp exceptions. Looked up only when an
    exception is being handled, so the happy path imports neither.
    """
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
        )
    except ImportError:
        pass
    else:
        errors += [BotoCoreError, ClientError]
    try:
        from aiohttp import ClientError as AiohttpClientError
    except ImportError:
        pass
    else:
        errors.append(AiohttpClientError)
    return tuple(errors)


class FsspecArtifactStore(ArtifactStore):
    """Blobs as objects below an fsspec URL such as ``s3://bucket/prefix``.

    Each object is written with one ``pipe_file`` call, which object stores apply
    atomically (a single PUT, or a multipart upload that appears only on completion).
    New blobs are created exclusively (``If-None-Match: *`` on S3); pass
    ``exclusive_writes=False`` for S3-compatible servers that do not support
    conditional writes (content is addressed by hash, so a repeated write is harmless;
    only ``created`` may then be reported by two racing writers).

    Args:
        url: The store's root as an fsspec URL with a scheme.
        storage_options: Passed to the fsspec filesystem (credentials, endpoint...).
            Never shown in ``repr`` or error messages.
        exclusive_writes: Create new blobs with a conditional write.

    Raises:
        InvalidInputError: ``url`` has no scheme.
    """

    touch_after_s = 60.0
    """A blob stored again older than this is written again (see :meth:`_touch`)."""

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        exclusive_writes: bool = True,
    ) -> None:
        if "://" not in url:
            raise InvalidInputError(
                f"artifact location {url!r} needs a scheme, e.g. 's3://bucket/prefix'"
            )
        self._url = url
        self._scheme = url.split("://", 1)[0].lower()
        self._options = dict(storage_options or {})
        self._exclusive = exclusive_writes
        self._lock = threading.Lock()
        self._fs: Any = None
        self._root = ""

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> FsspecArtifactStore:
        """Build a store for ``uri``; ``options`` are this class's keyword arguments."""
        return cls(uri, **options)

    @property
    def url(self) -> str:
        """The store's root URL."""
        return self._url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._safe_url()!r})"

    def _safe_url(self) -> str:
        """The URL without any user:password@ it might carry."""
        parts = urlsplit(self._url)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"

    # --- primitives --------------------------------------------------------------------

    def _read(self, key: str) -> bytes:
        fs, path = self._locate(key)
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            raise ArtifactMissingError(key.rsplit("/", 1)[-1]) from None
        except backend_errors() as exc:
            raise store_unavailable(exc) from exc
        return bytes(data)

    def _write(self, key: str, data: bytes) -> None:
        fs, path = self._locate(key)
        try:
            fs.pipe_file(path, data)
        except FileNotFoundError as exc:
            raise _no_root() from exc
        except backend_errors() as exc:
            raise store_unavailable(exc) from exc

    def _create(self, key: str, data: bytes) -> bool:
        if not self._exclusive:
            return super()._create(key, data)
        fs, path = self._locate(key)
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except FileNotFoundError as exc:
            raise _no_root() from exc
        except backend_errors() as exc:
            raise store_unavailable(exc) from exc
        return True

    def _touch(self, key: str) -> None:
        """Object stores keep no settable modification time: write the object again
        (the same bytes, one atomic put) unless it was written in the last minute, so
        that garbage collection sees a blob stored again as young. Best effort: the blob
        is intact either way."""
        # (The grace period is hours; a rewrite costs a round trip: not every time.)
        modified = self._modified(key)
        if modified is not None and time.time() - modified < self.touch_after_s:
            return
        with contextlib.suppress(ModelhostError):
            self._write(key, self._read(key))

    def _info(self, key: str) -> dict[str, Any] | None:
        """The store's own description of ``key``, or None if there is nothing."""
        fs, path = self._locate(key)
        try:
            # Listings fill fsspec's cache; another process may have written or
            # deleted this key since, so ask the store itself.
            fs.invalidate_cache(path)
            info: dict[str, Any] = fs.info(path)
        except FileNotFoundError:
            return None
        except backend_errors() as exc:
            raise store_unavailable(exc) from exc
        return info

    def _exists(self, key: str) -> bool:
        info = self._info(key)
        return info is not None and info.get("type") == "file"

    def _modified(self, key: str) -> float | None:
        info = self._info(key)
        if info is None:
            return None
        # Local and memory filesystems say "mtime"/"created"; S3 "LastModified".
        for name in ("mtime", "LastModified", "last_modified", "created"):
            value: Any = info.get(name)
            if isinstance(value, (int, float)):
                return float(value)
            if hasattr(value, "timestamp"):  # a datetime
                return float(value.timestamp())
        return None

    def _delete(self, key: str) -> None:
        fs, path = self._locate(key)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            return
        except backend_errors() as exc:
            raise store_unavailable(exc) from exc

    def _list(self, prefix: str) -> Iterator[str]:
        fs, base = self._locate(prefix)
        # find() returns paths in the filesystem's own spelling (memory:// adds a
        # leading "/"), so strip the root in that spelling too.
        root = fs._strip_protocol(base)[: -len(safe_relpath(prefix))]
        try:
            fs.invalidate_cache(base)
            # find() lists recursively in one paginated request on object stores.
            found = fs.find(base)
        except FileNotFoundError:
            return
        except backend_errors() as exc:
            raise store_unavailable(exc) from exc
        for path in sorted(found):
            if path.startswith(root):
                yield path[len(root) :]

    # --- helpers -----------------------------------------------------------------------

    def _filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem and root path, created on first use."""
        with self._lock:
            if self._fs is None:
                try:
                    from fsspec.core import url_to_fs

                    fs, root = url_to_fs(self._url, **self._options)
                except ImportError as exc:
                    extra = _EXTRAS.get(self._scheme)
                    if extra is not None:
                        raise MissingDependencyError(
                            f"{self._scheme} artifact storage", extra
                        ) from exc
                    raise InvalidInputError(
                        f"artifact scheme {self._scheme!r} needs a package that is not "
                        f"installed ({exc}); install it and try again"
                    ) from exc
                except ValueError as exc:
                    raise InvalidInputError(
                        f"artifact location {self._safe_url()!r} is not usable"
                    ) from exc
                self._fs, self._root = fs, str(root).rstrip("/")
            return self._fs, self._root

    def _locate(self, key: str) -> tuple[Any, str]:
        fs, root = self._filesystem()
        clean = safe_relpath(key)
        return fs, f"{root}/{clean}" if root else clean


def _no_root() -> StoreUnavailableError:
    # A write can only miss its target when the bucket (or container) is gone.
    return StoreUnavailableError(
        "artifact store", "its bucket or root does not exist; create it or fix the URL"
    )
