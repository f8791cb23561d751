"""Garbage collection of artifact blobs, on local, memory:// and S3 (moto) stores, and
``modelhost gc`` over a real registry."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from modelhost import Client, Settings
from modelhost.artifacts import ArtifactStore
from modelhost.artifacts.gc import collect_garbage
from modelhost.cli import run
from tests.artifacts.conftest import Backend
from tests.fixtures_models import iris_example, iris_model

DAY = dt.timedelta(days=1)


def tree(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def later(days: float) -> float:
    return time.time() + days * 86400


def test_only_old_unreferenced_blobs_go(backend: Backend, tmp_path: Path) -> None:
    store: ArtifactStore = backend.store
    used = store.put_tree(tree(tmp_path / "used", {"model.bin": b"weights", "shared": b"s"}))
    orphan = store.put_tree(tree(tmp_path / "orphan", {"old.bin": b"old", "shared": b"s"}))
    loose = store.put_bytes(b"a blob no tree holds").digest
    in_use = [used.digest]

    # Within the grace period nothing goes, referenced or not.
    kept = collect_garbage(store, lambda: in_use, grace=DAY, clock=lambda: later(0.5))
    assert (kept.stored, kept.in_use, kept.young, kept.removed) == (6, 3, 3, [])

    # A dry run after it says what would go, and removes nothing.
    dry = collect_garbage(store, lambda: in_use, grace=DAY, dry_run=True,
                          clock=lambda: later(2))
    doomed = {orphan.digest, store.put_bytes(b"old").digest, loose}
    assert set(dry.removed) == doomed and dry.dry_run
    assert all(store.exists(d) for d in doomed)

    done = collect_garbage(store, lambda: in_use, grace=DAY, clock=lambda: later(2))
    assert set(done.removed) == doomed and (done.stored, done.in_use) == (6, 3)
    assert not any(store.exists(d) for d in doomed)
    # The referenced tree is whole, with the blob it shared with the orphan.
    out = store.get_tree(used.digest, tmp_path / "out")
    assert (out / "model.bin").read_bytes() == b"weights" and (out / "shared").read_bytes() \
        == b"s"
    assert collect_garbage(store, lambda: in_use, grace=DAY,
                           clock=lambda: later(2)).removed == []


def test_a_version_committed_during_the_collection_keeps_its_blobs(
        backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    late = store.put_tree(tree(tmp_path / "late", {"model.bin": b"registered late"}))
    reads: list[int] = []

    def in_use() -> list[str]:
        # The registration commits after the collection first read the references.
        reads.append(1)
        return [] if len(reads) == 1 else [late.digest]

    done = collect_garbage(store, in_use, grace=DAY, clock=lambda: later(2))
    assert done.removed == [] and store.exists(late.digest)
    assert store.get_tree(late.digest, tmp_path / "out").joinpath("model.bin").exists()


def test_a_blob_stored_again_starts_its_grace_over(tmp_path: Path) -> None:
    from modelhost.artifacts import open_artifact_store

    store = open_artifact_store(str(tmp_path / "store"))
    digest = store.put_bytes(b"registered, removed, registered again").digest
    path = next((tmp_path / "store").rglob(digest))
    os.utime(path, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    assert time.time() - (store.modified(digest) or 0) > 2 * 86400
    store.put_bytes(b"registered, removed, registered again")  # the same bytes: reused
    assert time.time() - (store.modified(digest) or 0) < 60
    done = collect_garbage(store, list, grace=DAY)
    assert done.young == 1 and done.removed == [] and store.exists(digest)


def test_modelhost_gc_keeps_every_version_loadable(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELHOST_HOME", str(home))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS"):
        monkeypatch.delenv(var, raising=False)
    with Client(Settings(home=home)) as client:
        for _ in range(2):
            client.registry.register(iris_model(), name="iris", input_example=iris_example())
        stray = client.artifacts.put_tree(tree(tmp_path / "stray", {"x": b"left behind"}))
    blobs = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    old = time.time() - 2 * 86400
    for path in blobs:  # everything written two days ago
        os.utime(path, (old, old))

    assert run(["gc", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] and dry["removed"] == 2  # the stray tree: its manifest and file
    assert stray.digest in dry["digests"]
    assert run(["gc"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("removed 2") and "in use" in out
    with Client(Settings(home=home)) as client:
        assert not client.artifacts.exists(stray.digest)
        for version in ("1.0.0", "1.0.1"):
            assert client.registry.load("iris", version).predict(iris_example()) is not None

    assert run(["gc", "--grace", "soon"]) == 1
    assert "not a duration" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["memory", "s3"], indirect=True)
def test_an_object_stored_again_is_written_again_to_start_its_grace_over(
        backend: Backend) -> None:
    """Object stores keep no settable modification time: a blob stored again that is
    older than ``touch_after_s`` is written again (the same bytes), so that a collection
    running meanwhile finds it young; a recent one is left alone (no extra round trip)."""
    store = backend.store
    data = b"registered, unreferenced for a while, registered again"
    digest = store.put_bytes(data).digest
    first = store.modified(digest)
    assert first is not None
    time.sleep(1.1)  # S3 keeps whole seconds
    store.put_bytes(data)  # written under a minute ago: not rewritten
    assert store.modified(digest) == first
    store.touch_after_s = 0.5  # type: ignore[attr-defined]
    store.put_bytes(data)
    again = store.modified(digest)
    assert again is not None and again > first
    assert store.get_bytes(digest) == data
    # A collection whose clock is within the grace period of the rewrite keeps it,
    # though it is past the grace period of the first write.
    grace = dt.timedelta(seconds=0.9)
    done = collect_garbage(store, list, grace=grace, clock=lambda: again + 0.5)
    assert first + grace.total_seconds() < again + 0.5
    assert done.young == 1 and done.removed == [] and store.exists(digest)
