"""The artifact store contract: content-addressed, sha256-verified, atomic.

A backend implements five small primitives over *keys* (relative POSIX paths inside the
store's root); everything else (hashing, verification, trees, manifests, safe
extraction) lives here once, so every backend gets the same guarantees.

Layout inside a store::

    sha256/<first 2 hex digits>/<64 hex digits>     one immutable blob per content

A *tree* (a model folder) is a set of blobs plus one manifest blob, canonical JSON::

    {"files": {"rel/posix/path": {"sha256": "...", "size": 123}}, "format": "modelhost-tree/1"}

Only regular files are recorded: empty folders, permissions and timestamps are not.
"""

from __future__ import annotations

import abc
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost._paths import confined_path, safe_relpath
from modelhost.errors import (
    ArtifactCorruptedError,
    FileNotFoundInputError,
    InvalidInputError,
    ModelhostError,
    PathEscapeError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)

__all__ = [
    "TREE_FORMAT",
    "ArtifactStore",
    "PutResult",
    "TreeResult",
    "blob_key",
    "fsync_folder",
    "store_unavailable",
    "validate_digest",
]

TREE_FORMAT = "modelhost-tree/1"

_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")
_BLOB_ROOT = "sha256"
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opening a FIFO for reading blocks until a writer appears; O_NONBLOCK makes the open
# return at once so the fstat check below can refuse it.
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


@dataclass(frozen=True)
class PutResult:
    """The outcome of storing one blob.

    Attributes:
        digest: sha256 of the content, 64 lowercase hex digits.
        size: Number of bytes stored.
        created: True only if this call created the blob; False if it already existed
            (the existing blob is never rewritten).
    """

    digest: str
    size: int
    created: bool


@dataclass(frozen=True)
class TreeResult:
    """The outcome of storing a file or folder as a tree.

    Attributes:
        digest: sha256 of the manifest blob; pass it to ``get_tree``.
        size: Total bytes of the files in the tree (the manifest not counted).
        created_blobs: Digests of the blobs this call created (files and manifest), so a
            caller whose own bookkeeping fails afterwards can delete exactly those.
    """

    digest: str
    size: int
    created_blobs: tuple[str, ...]

    @property
    def created(self) -> bool:
        """True if the manifest itself was new, i.e. this exact tree was not stored yet."""
        return self.digest in self.created_blobs


def validate_digest(digest: object) -> str:
    """Return ``digest`` if it is 64 lowercase hex digits.

    Raises:
        PathEscapeError: Anything else; a digest becomes part of a storage key, so a
            malformed one is treated as an attempt to address something else.
    """
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise PathEscapeError(digest[:80] if isinstance(digest, str) else repr(digest))
    return digest


def blob_key(digest: str) -> str:
    """The storage key of the blob with this (validated) digest."""
    validate_digest(digest)
    return f"{_BLOB_ROOT}/{digest[:2]}/{digest}"


def store_unavailable(exc: BaseException, what: str = "artifact store") -> StoreUnavailableError:
    """Build the error for a failed backend call.

    The reason is the errno text or the exception's class (or an S3 error code), never
    the exception's message, which may carry paths, bucket names or signed URLs.
    """
    reason = type(exc).__name__
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        reason = os.strerror(code)
    else:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error_code = response.get("Error", {}).get("Code")
            if isinstance(error_code, str) and error_code:
                reason = error_code
    return StoreUnavailableError(what, reason)


# How an encrypted blob starts (``encryption.py``): a store without the key says so.
SEALED_MAGIC = b"MHENC1\n"


class EncryptionKeyError(InvalidInputError):
    """A blob this store cannot open: encrypted with a key it was not given."""

    code = "encryption_key"


class ArtifactStore(abc.ABC):
    """Content-addressed storage of immutable blobs and trees of blobs.

    Subclasses implement the primitives ``_read``, ``_write``, ``_exists``, ``_delete``
    and ``_list`` (and may override ``_create`` with an atomic create-if-absent). Each
    primitive receives keys already built by this class and must pass them through
    ``modelhost._paths`` before touching storage, and must translate its own backend
    errors: a missing key to :class:`~modelhost.errors.ArtifactMissingError` in
    ``_read``, anything else to :class:`~modelhost.errors.StoreUnavailableError`.

    Constructors do no I/O. Instances are safe to share between threads.
    """

    @classmethod
    @abc.abstractmethod
    def from_uri(cls, uri: str, **options: Any) -> ArtifactStore:
        """Build a store from its location, as :func:`modelhost.artifacts.open_artifact_store`
        received it; ``options`` are the backend's keyword arguments. No I/O."""

    # --- primitives --------------------------------------------------------------------

    @abc.abstractmethod
    def _read(self, key: str) -> bytes:
        """Return the object at ``key``; raise ArtifactMissingError if there is none."""

    @abc.abstractmethod
    def _write(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` atomically: readers see the old object or all of the
        new one, never a part."""

    @abc.abstractmethod
    def _exists(self, key: str) -> bool:
        """True if a complete object exists at ``key``."""

    @abc.abstractmethod
    def _delete(self, key: str) -> None:
        """Remove the object at ``key``; do nothing if there is none."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[str]:
        """Yield the keys of the complete objects under the folder ``prefix``."""

    def _modified(self, key: str) -> float | None:
        """When the object at ``key`` was last written (or touched), as epoch seconds;
        None when the backend cannot say or there is no object (garbage collection then
        keeps it)."""
        return None

    def _touch(self, key: str) -> None:  # noqa: B027  # optional
        """Mark the object at ``key`` as just used (its modification time), where the
        backend can: a blob stored again is then young for garbage collection."""

    def _create(self, key: str, data: bytes) -> bool:
        """Store ``data`` at ``key`` unless an object is already there.

        Returns True if this call created the object. This default checks, then writes:
        two racing writers of the same content may both return True (the content is the
        same, so the blob is intact either way). Backends that can create exclusively
        override this so exactly one writer is told it created the blob.
        """
        if self._exists(key):
            return False
        self._write(key, data)
        return True

    # --- blobs -------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> PutResult:
        """Store ``data`` under its sha256.

        Returns:
            The digest, the size, and whether this call created the blob.

        Raises:
            StoreUnavailableError: The backend failed.
        """
        data = bytes(data)
        return self._put(hashlib.sha256(data).hexdigest(), data)

    def put_file(self, path: Path) -> PutResult:
        """Store the content of the regular file at ``path`` (a link to one is followed,
        since the caller named it).

        The file is hashed while it is read in chunks; its content is held in memory
        once, because the backend primitive writes whole objects.

        Raises:
            FileNotFoundInputError: ``path`` does not exist.
            InvalidInputError: ``path`` is not a regular file or cannot be read.
            StoreUnavailableError: The backend failed.
        """
        data, digest = _read_input_file(Path(path), follow_links=True)
        return self._put(digest, data)

    def get_bytes(self, digest: str) -> bytes:
        """Return the content of blob ``digest`` after checking its sha256.

        Raises:
            PathEscapeError: ``digest`` is not 64 lowercase hex digits.
            ArtifactMissingError: No such blob.
            ArtifactCorruptedError: The stored bytes no longer hash to ``digest``.
            StoreUnavailableError: The backend failed.
        """
        data = self._read(blob_key(digest))
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            if data.startswith(SEALED_MAGIC):  # encrypted, and this store has no key
                raise EncryptionKeyError(
                    f"artifact sha256:{digest[:12]} is encrypted; set "
                    "MODELHOST_ENCRYPTION_KEY to the key it was stored with")
            raise ArtifactCorruptedError(digest, actual)
        return data

    def exists(self, digest: str) -> bool:
        """True if blob ``digest`` is stored (its content is not verified).

        Raises:
            PathEscapeError: ``digest`` is malformed.
            StoreUnavailableError: The backend failed.
        """
        return self._exists(blob_key(digest))

    def delete(self, digest: str) -> None:
        """Delete blob ``digest``; deleting a missing blob is not an error.

        Deleting one blob of a tree does not touch the others; use :meth:`tree_blobs`
        to find them. Only delete blobs nothing else references.

        Raises:
            PathEscapeError: ``digest`` is malformed.
            StoreUnavailableError: The backend failed.
        """
        self._delete(blob_key(digest))

    def discard_unreferenced(self, blobs: Iterable[str], *, in_use: Iterable[str]) -> int:
        """Delete ``blobs`` (created by a write that then failed) unless a tree among
        ``in_use`` (every manifest the metadata refers to) contains them.

        Best effort: returns how many were deleted; never raises, since a leftover
        unreferenced blob is harmless while deleting a used one is not.
        """
        try:
            referenced: set[str] = set()
            for manifest in in_use:
                referenced |= self.tree_blobs(manifest)
            doomed = set(blobs) - referenced
            for digest in doomed:
                self.delete(digest)
            return len(doomed)
        except ModelhostError:
            log.warning("could not remove unreferenced blobs after a failed write")
            return 0

    def modified(self, digest: str) -> float | None:
        """When blob ``digest`` was last written or stored again (epoch seconds), or
        None when the store cannot say or it is gone."""
        return self._modified(blob_key(digest))

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored blob (trees' manifests included).

        Objects that do not follow the blob layout (in-flight temporary files, strays)
        are skipped.

        Raises:
            StoreUnavailableError: The backend failed.
        """
        for key in self._list(_BLOB_ROOT):
            parts = key.split("/")
            if (
                len(parts) == 3
                and parts[0] == _BLOB_ROOT
                and _DIGEST.fullmatch(parts[2])
                and parts[1] == parts[2][:2]
            ):
                yield parts[2]

    # --- trees -------------------------------------------------------------------------

    def put_tree(self, path: Path) -> TreeResult:
        """Store a file or folder as a tree: one blob per regular file plus a manifest.

        A single file becomes a tree with one entry, its file name. The whole folder is
        checked before anything is written, so a refused tree stores nothing. ``path``
        itself may be a link (the caller named it); links inside it are refused.

        Returns:
            The manifest digest, the total size of the files, and the blobs created.

        Raises:
            FileNotFoundInputError: ``path`` does not exist.
            PathEscapeError: The tree contains a link, or a name :func:`safe_relpath`
                refuses (backslash, control character, ``%2e%2e``...).
            InvalidInputError: The tree contains a device, socket or pipe, or a file
                cannot be read.
            StoreUnavailableError: The backend failed. Blobs stored before the failure
                stay; they are unreferenced and safe to collect.
        """
        files = _collect_tree(Path(path))
        created: list[str] = []
        entries: dict[str, dict[str, Any]] = {}
        total = 0
        for rel, file_path in files:
            # O_NOFOLLOW again at read time: a file swapped for a link after the scan
            # is still refused.
            data, digest = _read_input_file(file_path, follow_links=False)
            result = self._put(digest, data)
            if result.created and digest not in created:
                created.append(digest)
            entries[rel] = {"sha256": digest, "size": len(data)}
            total += len(data)
        manifest = self.put_bytes(_encode_manifest(entries))
        if manifest.created:
            created.append(manifest.digest)
        return TreeResult(digest=manifest.digest, size=total, created_blobs=tuple(created))

    def tree_blobs(self, digest: str) -> set[str]:
        """The digests a tree consists of: its manifest and every file blob.

        Raises:
            PathEscapeError: ``digest`` is malformed or the manifest holds an unsafe path.
            InvalidInputError: Blob ``digest`` is not a tree manifest.
            ArtifactMissingError, ArtifactCorruptedError: As for :meth:`get_bytes`.
            StoreUnavailableError: The backend failed.
        """
        entries = self._load_manifest(digest)
        return {digest} | {file_digest for file_digest, _ in entries.values()}

    def get_tree(self, digest: str, dest: Path) -> Path:
        """Extract tree ``digest`` into the folder ``dest``, verifying every byte.

        Every manifest path is validated against ``dest`` before anything is written.
        Files are written into a private sibling staging folder which is renamed onto
        ``dest`` only once every blob has been read and verified, so on any failure
        ``dest`` is left as it was and nothing is left outside it.

        Args:
            digest: A manifest digest returned by :meth:`put_tree`.
            dest: A missing or empty folder (missing parents are created).

        Returns:
            ``dest``.

        Raises:
            PathEscapeError: A manifest path would leave ``dest``, or ``dest`` is a link.
            InvalidInputError: ``dest`` exists and is not an empty folder, or the blob is
                not a valid tree manifest.
            ArtifactMissingError, ArtifactCorruptedError: A blob is missing or damaged.
            StoreUnavailableError: The backend failed, or ``dest`` cannot be written.
        """
        dest = Path(dest)
        entries = self._load_manifest(digest)
        for rel in entries:
            confined_path(dest, rel)
        try:
            _check_destination(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = _make_staging_folder(dest)
        except OSError as exc:
            raise store_unavailable(exc, "destination folder") from exc
        try:
            for rel, (file_digest, size) in sorted(entries.items()):
                data = self.get_bytes(file_digest)
                if len(data) != size:
                    raise _not_a_manifest(digest, f"{rel!r} does not have the size it lists")
                _write_new_file(confined_path(staging, rel), data)
            _publish(staging, dest)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise store_unavailable(exc, "destination folder") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest

    # --- helpers -----------------------------------------------------------------------

    def _put(self, digest: str, data: bytes) -> PutResult:
        key = blob_key(digest)
        if not self._exists(key):
            return PutResult(digest=digest, size=len(data), created=self._create(key, data))
        # A blob that is already there is never rewritten while intact, but storing the
        # same content again is also how a damaged blob gets repaired: check it first.
        if hashlib.sha256(self._read(key)).hexdigest() != digest:
            self._write(key, data)
        else:  # in use again: garbage collection's grace period starts over
            self._touch(key)
        return PutResult(digest=digest, size=len(data), created=False)

    def _load_manifest(self, digest: str) -> dict[str, tuple[str, int]]:
        """Read, verify and validate a manifest; map each path to (digest, size)."""
        raw = self.get_bytes(digest)
        try:
            document = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
        except ValueError:
            raise _not_a_manifest(digest, "it is not JSON without duplicate keys") from None
        if not isinstance(document, dict) or set(document) != {"format", "files"}:
            raise _not_a_manifest(digest, "it needs exactly the keys 'format' and 'files'")
        if document["format"] != TREE_FORMAT:
            raise _not_a_manifest(digest, f"its format is not {TREE_FORMAT!r}")
        files = document["files"]
        if not isinstance(files, dict):
            raise _not_a_manifest(digest, "'files' is not an object")
        entries: dict[str, tuple[str, int]] = {}
        for rel, entry in files.items():
            # Only the canonical spelling is accepted, so two entries can never name
            # the same file ('a' and './a').
            if safe_relpath(rel) != rel:
                raise PathEscapeError(rel)
            if not isinstance(entry, dict) or set(entry) != {"sha256", "size"}:
                raise _not_a_manifest(digest, f"entry {rel!r} needs exactly 'sha256' and 'size'")
            size = entry["size"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise _not_a_manifest(digest, f"entry {rel!r} has an invalid size")
            entries[rel] = (validate_digest(entry["sha256"]), size)
        for rel in entries:
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                if "/".join(parts[:depth]) in entries:
                    parent = "/".join(parts[:depth])
                    raise _not_a_manifest(digest, f"{rel!r} lies inside the file {parent!r}")
        return entries


# --- module helpers -------------------------------------------------------------------


def _not_a_manifest(digest: str, reason: str) -> InvalidInputError:
    return InvalidInputError(
        f"artifact sha256:{digest[:12]} is not a valid {TREE_FORMAT} manifest: {reason}; "
        "pass the digest that put_tree returned"
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys silently; a manifest saying two
    # things about one path is refused instead.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _encode_manifest(entries: dict[str, dict[str, Any]]) -> bytes:
    # Canonical: sorted keys, no whitespace, UTF-8, so equal trees get equal digests.
    document = {"format": TREE_FORMAT, "files": entries}
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _read_input_file(path: Path, *, follow_links: bool) -> tuple[bytes, str]:
    """Read a caller's regular file in chunks; return its content and sha256."""
    flags = os.O_RDONLY | _O_BINARY | _O_NONBLOCK | (0 if follow_links else _O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundInputError(str(path)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathEscapeError(str(path)) from None
        raise InvalidInputError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    hasher = hashlib.sha256()
    chunks: list[bytes] = []
    try:
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise _not_a_regular_file(str(path))
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                chunks.append(chunk)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return b"".join(chunks), hasher.hexdigest()


def _not_a_regular_file(what: str) -> InvalidInputError:
    return InvalidInputError(
        f"{what!r} is not a regular file or folder (a device, socket or pipe); "
        "remove it and try again"
    )


def _collect_tree(path: Path) -> list[tuple[str, Path]]:
    """Every regular file of a tree as (relative key, path), validated, sorted by key."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundInputError(str(path)) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    if stat.S_ISREG(mode):
        return [(safe_relpath(path.name), path)]
    if not stat.S_ISDIR(mode):
        raise _not_a_regular_file(str(path))
    found: list[tuple[str, Path]] = []
    try:
        _walk(path, "", found)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return sorted(found)


def _walk(folder: Path, prefix: str, found: list[tuple[str, Path]]) -> None:
    with os.scandir(folder) as scan:
        children = sorted(scan, key=lambda entry: entry.name)
    for child in children:
        rel = prefix + child.name
        if child.is_symlink():
            raise PathEscapeError(rel)
        if child.is_dir(follow_symlinks=False):
            _walk(Path(child.path), rel + "/", found)
        elif child.is_file(follow_symlinks=False):
            found.append((safe_relpath(rel), Path(child.path)))
        else:
            raise _not_a_regular_file(rel)


def _check_destination(dest: Path) -> None:
    if dest.is_symlink():
        raise PathEscapeError(str(dest))
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(
            f"destination {str(dest)!r} must be an empty or missing folder; "
            "empty it or choose another"
        )


def _make_staging_folder(dest: Path) -> Path:
    """A fresh, empty sibling of ``dest`` (same filesystem, so it can be renamed onto it).

    Not tempfile.mkdtemp: its 0700 mode would become the mode of ``dest``; mkdir with
    0777 lets the umask decide, as for any folder the user creates.
    """
    while True:
        staging = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.partial"
        try:
            staging.mkdir(0o777)
        except FileExistsError:
            continue
        return staging


def _write_new_file(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: the staging folder is fresh, so an existing file means two entries
    # collided (e.g. on a case-insensitive filesystem); never overwrite silently.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_NOFOLLOW
    with open(os.open(target, flags, 0o644), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _publish(staging: Path, dest: Path) -> None:
    """Move the finished staging folder onto ``dest`` in one rename."""
    try:
        # POSIX rename replaces a missing or *empty* folder atomically.
        staging.replace(dest)
    except OSError:
        # Windows refuses to replace a folder; an empty one may be removed first. A
        # folder that filled up meanwhile is the caller's conflict, not ours to clobber.
        if not dest.is_dir() or any(dest.iterdir()):
            raise InvalidInputError(
                f"destination {str(dest)!r} is no longer empty; empty it or choose another"
            ) from None
        dest.rmdir()
        staging.replace(dest)
    fsync_folder(dest.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename or new entry in ``folder`` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
