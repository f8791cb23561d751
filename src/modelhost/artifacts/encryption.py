"""Encryption of artifacts at rest: every blob sealed with AES-256-GCM before it reaches
the backend, and opened after it is read.

A blob keeps its identity: its name is the sha256 of its *plaintext*, computed before it
is sealed and checked again after it is opened, so encryption changes nothing above the
store (registrations, trees, deduplication, garbage collection). A sealed blob is
``MHENC1\\n``, the 8-byte id of its key (the start of the key's sha256), a 12-byte random
nonce, and the ciphertext with its tag; the blob's path is authenticated with it, so a
sealed blob moved under another name does not open.

Keys are 32 random bytes in URL-safe base64 (``modelhost artifacts new-key``). The store
opens blobs sealed with its key, with any old key it is given (during a rotation), and
plaintext blobs (written before encryption was turned on; ``rotate-key`` seals them).
A blob sealed with a key it does not have is refused with a clear error, never handed
out in part. ``cryptography`` is loaded on first use (``pip install 'modelhost[encryption]'``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from modelhost.artifacts.base import (
    SEALED_MAGIC,
    ArtifactStore,
    EncryptionKeyError,
    blob_key,
)
from modelhost.errors import ArtifactCorruptedError, InvalidInputError, MissingDependencyError

__all__ = ["EncryptedArtifactStore", "EncryptionKeyError", "Rotated", "new_key",
           "parse_key"]

MAGIC = SEALED_MAGIC
_ID = 8
_NONCE = 12
_HEADER = len(MAGIC) + _ID + _NONCE


def new_key() -> str:
    """A fresh key: 32 random bytes in URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def parse_key(text: str, what: str = "MODELHOST_ENCRYPTION_KEY") -> bytes:
    """The 32 bytes of a key; raises InvalidInputError naming ``what`` (never echoing
    the value)."""
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidInputError(
            f"{what} must be 32 random bytes in URL-safe base64 (44 characters), as "
            "'modelhost artifacts new-key' prints")
    return raw


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_ID]


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise MissingDependencyError("encrypting artifacts", "encryption") from None
    return AESGCM(key)


@dataclass(frozen=True)
class Rotated:
    sealed: int  # blobs sealed again with the current key
    current: int  # already sealed with it

    def to_dict(self) -> dict[str, int]:
        return {"sealed": self.sealed, "current": self.current}


class EncryptedArtifactStore(ArtifactStore):
    """``inner`` with every blob sealed on its way in and opened on its way out."""

    def __init__(self, inner: ArtifactStore, key: bytes,
                 old_keys: Sequence[bytes] = ()) -> None:
        self._inner = inner
        self._key_id = key_id(key)
        self._seal_with = _aesgcm(key)
        self._keys = {key_id(k): _aesgcm(k) for k in (*old_keys, key)}

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> ArtifactStore:  # pragma: no cover
        raise TypeError("wrap a store: EncryptedArtifactStore(open_artifact_store(uri), key)")

    def __repr__(self) -> str:
        return f"EncryptedArtifactStore({self._inner!r})"

    # --- sealing ----------------------------------------------------------------------

    def _seal(self, key: str, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        sealed: bytes = self._seal_with.encrypt(nonce, data, key.encode())
        return MAGIC + self._key_id + nonce + sealed

    def _open(self, key: str, stored: bytes) -> bytes:
        if not stored.startswith(MAGIC):
            return stored  # written before encryption was turned on
        sealed_with = stored[len(MAGIC):len(MAGIC) + _ID]
        cipher = self._keys.get(sealed_with)
        digest = key.rsplit("/", 1)[-1]
        if cipher is None:
            raise EncryptionKeyError(
                f"artifact sha256:{digest[:12]} is encrypted with another key (id "
                f"{sealed_with.hex()}); set MODELHOST_ENCRYPTION_KEY to it, or list it in "
                "MODELHOST_ENCRYPTION_OLD_KEYS while rotating keys")
        nonce = stored[len(MAGIC) + _ID:_HEADER]
        from cryptography.exceptions import InvalidTag

        try:
            opened: bytes = cipher.decrypt(nonce, stored[_HEADER:], key.encode())
        except InvalidTag:  # damaged, or moved here from another name
            raise ArtifactCorruptedError(digest, hashlib.sha256(stored).hexdigest()) from None
        return opened

    # --- primitives: the inner store's, sealed ----------------------------------------

    def _read(self, key: str) -> bytes:
        return self._open(key, self._inner._read(key))

    def _write(self, key: str, data: bytes) -> None:
        self._inner._write(key, self._seal(key, data))

    def _create(self, key: str, data: bytes) -> bool:
        return self._inner._create(key, self._seal(key, data))

    def _exists(self, key: str) -> bool:
        return self._inner._exists(key)

    def _delete(self, key: str) -> None:
        self._inner._delete(key)

    def _list(self, prefix: str) -> Iterator[str]:
        return self._inner._list(prefix)

    def _modified(self, key: str) -> float | None:
        return self._inner._modified(key)

    def _touch(self, key: str) -> None:
        self._inner._touch(key)

    # --- rotation ---------------------------------------------------------------------

    def rotate(self) -> Rotated:
        """Seal every blob not sealed with the current key (old keys' and plaintext
        ones) with it, one blob at a time, each replaced atomically and checked against
        its sha256 first: servers keep reading throughout."""
        sealed = current = 0
        for digest in self.iter_digests():
            key = blob_key(digest)
            stored = self._inner._read(key)
            if stored.startswith(MAGIC + self._key_id):
                current += 1
                continue
            self._inner._write(key, self._seal(key, self.get_bytes(digest)))
            sealed += 1
        return Rotated(sealed=sealed, current=current)
