"""What only the local filesystem backend promises: confinement, atomic temp files,
exclusive creation, read-only blobs, and error messages without paths."""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelhost.artifacts import LocalArtifactStore
from modelhost.artifacts.base import blob_key
from modelhost.errors import PathEscapeError, StoreUnavailableError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def test_constructor_does_no_io(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    store = LocalArtifactStore(root)
    assert store.root == root
    assert not (tmp_path / "not").exists()
    assert list(store.iter_digests()) == []
    assert not (tmp_path / "not").exists()
    assert repr(store) == f"LocalArtifactStore({str(root)!r})"


def test_no_temp_files_after_success(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = store.put_bytes(b"data").digest
    assert all_files(tmp_path) == [blob_key(digest)]


def test_blobs_are_read_only(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = store.put_bytes(b"data").digest
    mode = (tmp_path / blob_key(digest)).stat().st_mode
    assert stat.S_ISREG(mode)
    assert mode & 0o222 == 0


def test_concurrent_puts_create_exactly_once(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    data = os.urandom(128 * 1024)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: store.put_bytes(data), range(64)))
    # The hard link makes creation exclusive: one writer is told it created the blob.
    assert sum(r.created for r in results) == 1
    assert all_files(tmp_path) == [blob_key(sha(data))]
    assert store.get_bytes(sha(data)) == data


def test_file_blocking_a_shard_folder(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = sha(b"data")
    (tmp_path / "sha256").mkdir()
    (tmp_path / "sha256" / digest[:2]).write_bytes(b"in the way")
    with pytest.raises(StoreUnavailableError) as excinfo:
        store.put_bytes(b"data")
    assert excinfo.value.code == "unavailable"
    assert str(tmp_path) not in excinfo.value.message
    assert all_files(tmp_path) == [f"sha256/{digest[:2]}"]


def test_folder_blocking_a_blob_leaves_no_temp_file(tmp_path: Path) -> None:
    # The temp file is written first, then cannot be linked into place.
    store = LocalArtifactStore(tmp_path)
    digest = sha(b"data")
    blocker = tmp_path / blob_key(digest)
    blocker.mkdir(parents=True)
    (blocker / "inside").write_bytes(b"x")
    with pytest.raises(StoreUnavailableError, match="not a regular file"):
        store.put_bytes(b"data")
    assert all_files(tmp_path) == [f"{blob_key(digest)}/inside"]
    with pytest.raises(StoreUnavailableError):
        store.get_bytes(digest)
    with pytest.raises(StoreUnavailableError):
        store.delete(digest)


def test_overwrite_primitive_cleans_up_after_failure(tmp_path: Path) -> None:
    # _write replaces atomically; when the replace fails its temp file goes too.
    store = LocalArtifactStore(tmp_path)
    key = blob_key(sha(b"data"))
    blocker = tmp_path / key
    blocker.mkdir(parents=True)
    (blocker / "inside").write_bytes(b"x")
    with pytest.raises(StoreUnavailableError):
        store._write(key, b"data")
    assert all_files(tmp_path) == [f"{key}/inside"]
    store._write(blob_key(sha(b"other")), b"other")
    assert store.get_bytes(sha(b"other")) == b"other"
    assert f"{key}/inside" in all_files(tmp_path)
    assert len(all_files(tmp_path)) == 2


def test_root_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_bytes(b"not a folder")
    store = LocalArtifactStore(root)
    with pytest.raises(StoreUnavailableError):
        store.put_bytes(b"data")
    assert not store.exists(sha(b"data"))
    assert list(store.iter_digests()) == []


def test_blob_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    digest = sha(b"secret")
    link = root / blob_key(digest)
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    with pytest.raises(PathEscapeError):
        store.get_bytes(digest)
    with pytest.raises(PathEscapeError):
        store.exists(digest)
    with pytest.raises(PathEscapeError):
        store.put_bytes(b"secret")
    assert secret.read_bytes() == b"secret"


def test_shard_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    digest = sha(b"data")
    (root / "sha256").mkdir(parents=True)
    (root / "sha256" / digest[:2]).symlink_to(outside, target_is_directory=True)
    store = LocalArtifactStore(root)
    with pytest.raises(PathEscapeError):
        store.put_bytes(b"data")
    assert list(outside.iterdir()) == []


def test_listing_skips_links_and_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest = store.put_bytes(b"data").digest
    shard = tmp_path / "sha256" / digest[:2]
    (shard / ".tmp-deadbeef").write_bytes(b"half written")
    other = sha(b"other")
    (shard.parent / other[:2]).mkdir(exist_ok=True)
    (shard.parent / other[:2] / other).symlink_to(tmp_path / "x")
    assert list(store.iter_digests()) == [digest]


def test_root_may_be_reached_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    store = LocalArtifactStore(alias)
    digest = store.put_bytes(b"data").digest
    assert store.get_bytes(digest) == b"data"
    assert (real / blob_key(digest)).exists()
