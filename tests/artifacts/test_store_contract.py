"""The behaviour every artifact store promises, run on local, memory:// and S3 (moto)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelhost.artifacts import ArtifactStore, PutResult, TreeResult
from modelhost.artifacts.base import TREE_FORMAT, blob_key
from modelhost.errors import (
    ArtifactCorruptedError,
    ArtifactMissingError,
    FileNotFoundInputError,
    InvalidInputError,
    PathEscapeError,
)
from tests.artifacts.conftest import Backend


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(files: dict[str, dict[str, object]]) -> bytes:
    return json.dumps({"format": TREE_FORMAT, "files": files}).encode()


def snapshot(folder: Path) -> set[str]:
    """Every path under ``folder`` (links not followed), to prove nothing was written."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def make_tree(root: Path) -> dict[str, bytes]:
    """A model-like folder: nested folders, an empty file, binary and unicode names."""
    rng = random.Random(7)
    files = {
        "model.bin": rng.randbytes(3 * 1024 * 1024 + 17),  # several read chunks
        "empty.txt": b"",
        "conf/settings.json": b'{"a": 1}\n',
        "conf/deep/er/leaf.txt": b"leaf",
        "données/π.bin": bytes(range(256)),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty-folder").mkdir()
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


# --- blobs ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"hello", bytes(range(256)) * 997])
def test_bytes_round_trip(store: ArtifactStore, data: bytes) -> None:
    result = store.put_bytes(data)
    assert result == PutResult(digest=sha(data), size=len(data), created=True)
    assert store.get_bytes(result.digest) == data
    assert store.exists(result.digest)


def test_put_is_idempotent_and_uses_the_sharded_layout(backend: Backend) -> None:
    first = backend.store.put_bytes(b"same")
    second = backend.store.put_bytes(b"same")
    assert first.created is True
    assert second.created is False
    assert second.digest == first.digest
    assert backend.raw_keys() == [f"sha256/{first.digest[:2]}/{first.digest}"]


def test_storing_the_same_content_repairs_a_damaged_blob(backend: Backend) -> None:
    digest = backend.store.put_bytes(b"content").digest
    backend.corrupt(digest)
    assert backend.read_raw(blob_key(digest)) != b"content"
    assert backend.store.put_bytes(b"content").created is False
    assert backend.read_raw(blob_key(digest)) == b"content"
    assert backend.store.get_bytes(digest) == b"content"


def test_create_primitive_reports_existing_blob(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"twice").digest
    assert store._create(blob_key(digest), b"twice") is False


def test_file_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(2 * 1024 * 1024 + 3)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    result = store.put_file(path)
    assert result == PutResult(digest=sha(data), size=len(data), created=True)
    assert store.get_bytes(result.digest) == data
    assert store.put_file(path).created is False


def test_put_file_missing(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundInputError):
        store.put_file(tmp_path / "nope")


def test_put_file_refuses_a_folder(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        store.put_file(tmp_path)


def test_get_missing_blob(store: ArtifactStore) -> None:
    digest = sha(b"never stored")
    assert not store.exists(digest)
    with pytest.raises(ArtifactMissingError) as excinfo:
        store.get_bytes(digest)
    assert excinfo.value.code == "artifact_missing"
    assert digest[:12] in excinfo.value.message


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "abc",
        "A" * 64,
        "g" * 64,
        "a" * 63,
        "a" * 65,
        "../" + "a" * 61,
        "aa/" + "a" * 61,
        "a" * 63 + "\n",
    ],
)
def test_malformed_digest_is_refused(store: ArtifactStore, tmp_path: Path, digest: str) -> None:
    for call in (store.get_bytes, store.exists, store.delete, store.tree_blobs):
        with pytest.raises(PathEscapeError):
            call(digest)
    with pytest.raises(PathEscapeError):
        store.get_tree(digest, tmp_path / "dest")


def test_corrupted_blob_is_detected(backend: Backend) -> None:
    digest = backend.store.put_bytes(b"precious weights").digest
    backend.corrupt(digest)
    with pytest.raises(ArtifactCorruptedError) as excinfo:
        backend.store.get_bytes(digest)
    assert excinfo.value.code == "artifact_corrupted"
    assert digest[:12] in excinfo.value.message
    assert sha(backend.read_raw(blob_key(digest)))[:12] in excinfo.value.message


def test_exists_delete_and_iter_digests(store: ArtifactStore) -> None:
    digests = {store.put_bytes(bytes([i])).digest for i in range(5)}
    assert set(store.iter_digests()) == digests
    gone = sorted(digests)[0]
    store.delete(gone)
    assert not store.exists(gone)
    store.delete(gone)  # deleting a missing blob is not an error
    assert set(store.iter_digests()) == digests - {gone}
    with pytest.raises(ArtifactMissingError):
        store.get_bytes(gone)


def test_iter_digests_skips_objects_outside_the_layout(backend: Backend) -> None:
    digest = backend.store.put_bytes(b"real").digest
    backend.write_raw("sha256/zz/not-a-digest", b"x")
    backend.write_raw(f"sha256/00/{digest}", b"real")  # wrong shard
    backend.write_raw("elsewhere/file", b"x")
    assert list(backend.store.iter_digests()) == [digest]


def test_iter_digests_of_an_empty_store(store: ArtifactStore) -> None:
    assert list(store.iter_digests()) == []


def test_concurrent_puts_of_the_same_bytes(backend: Backend) -> None:
    data = random.Random(3).randbytes(256 * 1024)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: backend.store.put_bytes(data), range(16)))
    assert {r.digest for r in results} == {sha(data)}
    assert any(r.created for r in results)
    assert backend.store.get_bytes(sha(data)) == data
    # One object, and no temporary files left behind.
    assert backend.raw_keys() == [blob_key(sha(data))]


# --- trees ---------------------------------------------------------------------------


def test_tree_round_trip(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = make_tree(source)
    result = backend.store.put_tree(source)
    assert isinstance(result, TreeResult)
    assert result.size == sum(len(d) for d in files.values())
    assert result.created
    assert set(result.created_blobs) == {sha(d) for d in files.values()} | {result.digest}
    assert len(result.created_blobs) == len(set(result.created_blobs))

    dest = tmp_path / "out" / "model"
    assert backend.store.get_tree(result.digest, dest) == dest
    assert read_tree(dest) == files
    assert snapshot(tmp_path / "out") == {"model", *snapshot_of(files, "model")}

    again = backend.store.put_tree(source)
    assert again == TreeResult(digest=result.digest, size=result.size, created_blobs=())
    assert not again.created


def snapshot_of(files: dict[str, bytes], prefix: str) -> set[str]:
    """The paths (files and their folders) a tree of ``files`` occupies under prefix."""
    out: set[str] = set()
    for rel in files:
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            out.add(prefix + "/" + "/".join(parts[:depth]))
    return out


def test_tree_manifest_is_canonical_json(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = make_tree(source)
    digest = store.put_tree(source).digest
    raw = store.get_bytes(digest)
    document = json.loads(raw)
    assert document == {
        "format": TREE_FORMAT,
        "files": {rel: {"sha256": sha(d), "size": len(d)} for rel, d in files.items()},
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert raw == canonical.encode()
    assert store.tree_blobs(digest) == {digest} | {sha(d) for d in files.values()}


def test_single_file_is_a_tree_of_one(store: ArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes")
    result = store.put_tree(path)
    assert result.size == len(b"onnx bytes")
    assert json.loads(store.get_bytes(result.digest))["files"] == {
        "model.onnx": {"sha256": sha(b"onnx bytes"), "size": 10}
    }
    dest = store.get_tree(result.digest, tmp_path / "dest")
    assert read_tree(dest) == {"model.onnx": b"onnx bytes"}


def test_identical_files_share_one_blob(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.bin").write_bytes(b"same")
    (source / "y.bin").write_bytes(b"same")
    result = store.put_tree(source)
    assert result.created_blobs == (sha(b"same"), result.digest)
    assert result.size == 8
    assert read_tree(store.get_tree(result.digest, tmp_path / "dest")) == {
        "a/x.bin": b"same",
        "y.bin": b"same",
    }


def test_empty_folder_is_an_empty_tree(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = store.put_tree(tmp_path / "empty")
    assert result.size == 0
    dest = store.get_tree(result.digest, tmp_path / "dest")
    assert dest.is_dir()
    assert list(dest.iterdir()) == []


def test_get_tree_into_an_existing_empty_folder(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = make_tree(source)
    dest = tmp_path / "dest"
    dest.mkdir()
    store.get_tree(store.put_tree(source).digest, dest)
    assert read_tree(dest) == files


def test_get_tree_refuses_a_busy_destination(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    make_tree(source)
    digest = store.put_tree(source).digest
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="empty or missing folder"):
        store.get_tree(digest, busy)
    assert snapshot(busy) == {"keep.txt"}
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InvalidInputError):
        store.get_tree(digest, a_file)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(PathEscapeError):
        store.get_tree(digest, link)
    assert not (tmp_path / "elsewhere").exists()


def test_put_tree_missing_path(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundInputError):
        store.put_tree(tmp_path / "nope")


# --- damaged and missing blobs in trees ------------------------------------------------


@pytest.mark.parametrize("damage", ["file", "manifest"])
def test_corrupted_tree_writes_nothing(backend: Backend, tmp_path: Path, damage: str) -> None:
    source = tmp_path / "model"
    files = make_tree(source)
    digest = backend.store.put_tree(source).digest
    backend.corrupt(digest if damage == "manifest" else sha(files["conf/deep/er/leaf.txt"]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArtifactCorruptedError):
        backend.store.get_tree(digest, out / "model")
    assert snapshot(out) == set()  # no dest, no staging folder left behind


def test_missing_blob_in_tree_writes_nothing(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "model"
    files = make_tree(source)
    digest = backend.store.put_tree(source).digest
    backend.store.delete(sha(files["model.bin"]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArtifactMissingError):
        backend.store.get_tree(digest, out / "model")
    assert snapshot(out) == set()


# --- refused trees -------------------------------------------------------------------


def test_put_tree_refuses_symlinks_and_stores_nothing(backend: Backend, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("do not upload me")
    for kind in ("file", "folder", "dangling"):
        source = tmp_path / f"model-{kind}"
        make_tree(source)
        link = source / "conf" / "link"
        if kind == "file":
            link.symlink_to(outside)
        elif kind == "folder":
            link.symlink_to(tmp_path, target_is_directory=True)
        else:
            link.symlink_to(tmp_path / "nowhere")
        with pytest.raises(PathEscapeError):
            backend.store.put_tree(source)
    assert backend.raw_keys() == []


def test_put_tree_refuses_a_pipe_and_stores_nothing(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "model"
    make_tree(source)
    os.mkfifo(source / "conf" / "pipe")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        backend.store.put_tree(source)
    assert backend.raw_keys() == []


@pytest.mark.parametrize("name", ["back\\slash.txt", "new\nline.txt", "%2e%2e"])
def test_put_tree_refuses_unsafe_names(backend: Backend, tmp_path: Path, name: str) -> None:
    source = tmp_path / "model"
    make_tree(source)
    (source / name).write_bytes(b"x")
    with pytest.raises(PathEscapeError):
        backend.store.put_tree(source)
    assert backend.raw_keys() == []


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "../../x",
        "/etc/passwd",
        "/tmp/x",
        "a/../../b",
        "a/../b",
        "..%2fx",
        "%2e%2e/x",
        "%252e%252e/x",
        "．．/x",
        "C:\\x",
        "a\\..\\..\\x",
        "a\x00b",
        "./a",
        "a//b",
        "",
    ],
)
def test_malicious_manifest_writes_nothing(backend: Backend, tmp_path: Path, path: str) -> None:
    payload = backend.store.put_bytes(b"pwned").digest
    digest = backend.store.put_bytes(
        manifest(
            {
                "ok.txt": {"sha256": payload, "size": 5},
                path: {"sha256": payload, "size": 5},
            }
        )
    ).digest
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(PathEscapeError):
        backend.store.get_tree(digest, work / "out" / "dest")
    assert snapshot(tmp_path) == before
    with pytest.raises(PathEscapeError):
        backend.store.tree_blobs(digest)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "exactly the keys"),
        (b'{"format": "modelhost-tree/1"}', "exactly the keys"),
        (b'{"format": "modelhost-tree/1", "files": {}, "extra": 1}', "exactly the keys"),
        (b'{"format": "modelhost-tree/2", "files": {}}', "format"),
        (b'{"format": "modelhost-tree/1", "files": []}', "'files'"),
        (b'{"format": "modelhost-tree/1", "files": {"a": 1}}', "needs exactly"),
        (b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s"}}}', "needs exactly"),
        (b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s", "size": -1}}}', "size"),
        (b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s", "size": true}}}', "size"),
        (b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s", "size": "1"}}}', "size"),
        (
            b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s", "size": 1},'
            b' "a": {"sha256": "%s", "size": 1}}}',
            "duplicate",
        ),
        (
            b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s", "size": 1},'
            b' "a/b": {"sha256": "%s", "size": 1}}}',
            "inside the file 'a'",
        ),
        (b'{"format": "modelhost-tree/1", "files": {"a": {"sha256": "%s", "size": 2}}}', "size"),
    ],
)
def test_invalid_manifest_is_refused(
    backend: Backend, tmp_path: Path, document: bytes, reason: str
) -> None:
    blob = backend.store.put_bytes(b"x").digest
    digest = backend.store.put_bytes(document.replace(b"%s", blob.encode())).digest
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidInputError, match=reason):
        backend.store.get_tree(digest, out / "dest")
    assert snapshot(out) == set()


def test_manifest_with_a_bad_file_digest(store: ArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(manifest({"a": {"sha256": "../../etc", "size": 1}})).digest
    with pytest.raises(PathEscapeError):
        store.get_tree(digest, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
