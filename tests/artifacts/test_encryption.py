"""Artifacts encrypted at rest: sealed on local, memory:// and S3 (moto) stores with their
plaintext identity; a registry that serves them; wrong, missing and malformed keys; and a
key rotation while another client keeps loading."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelhost import Client, Settings
from modelhost.artifacts import ArtifactStore
from modelhost.artifacts.encryption import (
    MAGIC,
    EncryptedArtifactStore,
    EncryptionKeyError,
    new_key,
    parse_key,
)
from modelhost.cli import run
from modelhost.errors import ArtifactCorruptedError, InvalidInputError
from tests.artifacts.conftest import Backend
from tests.fixtures_models import iris, iris_example, iris_model

KEY, OTHER = new_key(), new_key()


def sealed(store: ArtifactStore, key: str = KEY, old: tuple[str, ...] = ()) -> \
        EncryptedArtifactStore:
    return EncryptedArtifactStore(store, parse_key(key), [parse_key(k) for k in old])


def test_blobs_are_sealed_and_keep_their_plaintext_identity(backend: Backend,
                                                            tmp_path: Path) -> None:
    store = sealed(backend.store)
    secret = b"model weights nobody may read " * 20
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(secret)
    tree = store.put_tree(folder)
    digest = hashlib.sha256(secret).hexdigest()
    assert store.exists(digest) and digest in store.tree_blobs(tree.digest)
    for key in backend.raw_keys():
        raw = backend.read_raw(key)
        assert raw.startswith(MAGIC) and secret[:20] not in raw
    out = store.get_tree(tree.digest, tmp_path / "out")
    assert (out / "weights.bin").read_bytes() == secret
    # The same bytes stored again are found by their plaintext name: stored once.
    assert store.put_bytes(secret).created is False

    # Another key cannot open them, nor can the store without a key; nothing is
    # written where a tree would have gone.
    with pytest.raises(EncryptionKeyError, match="encrypted with another key"):
        sealed(backend.store, OTHER).get_tree(tree.digest, tmp_path / "other")
    with pytest.raises(EncryptionKeyError, match="is encrypted; set MODELHOST_ENCRYPTION_KEY"):
        backend.store.get_bytes(digest)
    assert not (tmp_path / "other").exists()

    # A sealed blob moved under another name does not open.
    blob_path = next(k for k in backend.raw_keys() if k.endswith(digest))
    other = store.put_bytes(b"something else").digest
    other_path = next(k for k in backend.raw_keys() if k.endswith(other))
    backend.write_raw(other_path, backend.read_raw(blob_path))
    with pytest.raises(ArtifactCorruptedError):
        store.get_bytes(other)


def test_keys_that_are_not_keys_are_refused_without_echoing_them() -> None:
    for text in ("short", "", "x" * 44, new_key()[:-4]):
        with pytest.raises(InvalidInputError, match="32 random bytes") as bad:
            parse_key(text)
        assert (text not in str(bad.value)) or not text


def test_a_registry_serves_encrypted_artifacts_and_rotates_its_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELHOST_HOME", str(home))
    for var in ("MODELHOST_DB_URL", "MODELHOST_ARTIFACTS", "MODELHOST_ENCRYPTION_OLD_KEYS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELHOST_ENCRYPTION_KEY", OTHER)
    X, _ = iris()
    with Client() as client:  # the environment's key
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
        expected = client.registry.load("iris", "1.0.0").predict(X).predictions
    files = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert files and all(p.read_bytes().startswith(MAGIC) for p in files)

    # Without the key, or with another: a clear error, never a model.
    monkeypatch.delenv("MODELHOST_ENCRYPTION_KEY")
    assert run(["predict", "iris", "--version", "1.0.0", "--input", str(_rows(tmp_path))]) == 1
    assert "is encrypted; set MODELHOST_ENCRYPTION_KEY" in capsys.readouterr().err
    monkeypatch.setenv("MODELHOST_ENCRYPTION_KEY", KEY)
    assert run(["predict", "iris", "--version", "1.0.0", "--input", str(_rows(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "MODELHOST_ENCRYPTION_OLD_KEYS" in err and KEY not in err and OTHER not in err
    monkeypatch.setenv("MODELHOST_ENCRYPTION_KEY", "not-a-key")
    assert run(["models", "list"]) == 1
    assert "32 random bytes" in capsys.readouterr().err

    # Rotation to KEY while another client keeps loading with both keys.
    monkeypatch.setenv("MODELHOST_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("MODELHOST_ENCRYPTION_OLD_KEYS", OTHER)
    failures: list[BaseException] = []
    done = threading.Event()

    def keep_loading() -> None:
        with Client(Settings(encryption_key=SecretStr(KEY),
                             encryption_old_keys=SecretStr(OTHER))) as reader:
            while not done.is_set():
                try:
                    reader.registry.load("iris", "1.0.0")
                except BaseException as exc:
                    failures.append(exc)

    thread = threading.Thread(target=keep_loading)
    thread.start()
    try:
        assert run(["artifacts", "rotate-key", "--json"]) == 0
    finally:
        done.set()
        thread.join()
    assert failures == []
    rotated = json.loads(capsys.readouterr().out)
    assert rotated == {"sealed": len(files), "current": 0}
    assert run(["artifacts", "rotate-key", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"sealed": 0, "current": len(files)}

    # The old key is no longer needed; the model predicts as before.
    monkeypatch.delenv("MODELHOST_ENCRYPTION_OLD_KEYS")
    with Client() as client:
        assert client.registry.load("iris", "1.0.0").predict(X).predictions == expected


def test_new_key_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["artifacts", "new-key"]) == 0
    printed = capsys.readouterr().out.strip()
    assert len(parse_key(printed)) == 32


def _rows(folder: Path) -> Path:
    path = folder / "rows.json"
    if not path.exists():
        path.write_text(iris_example().to_json(orient="records"))
    return path
