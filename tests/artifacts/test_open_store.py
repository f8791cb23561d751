"""Choosing a backend by URI scheme, and the fsspec backend's own edges."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from modelhost.artifacts import (
    LocalArtifactStore,
    UnknownArtifactSchemeError,
    open_artifact_store,
)
from modelhost.artifacts.fsspec_store import FsspecArtifactStore
from modelhost.errors import InvalidInputError, MissingDependencyError, StoreUnavailableError
from tests.artifacts.conftest import s3_storage_options


def test_plain_path_opens_a_local_store(tmp_path: Path) -> None:
    store = open_artifact_store(str(tmp_path / "a"))
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "a"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_artifact_store("~/artifacts")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "artifacts"


def test_file_url_opens_a_local_store(tmp_path: Path) -> None:
    store = open_artifact_store(f"file://{tmp_path}/with%20space")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "with space"
    store = open_artifact_store(f"FILE://localhost{tmp_path}")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path


def test_file_url_of_another_host_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="must be local"):
        open_artifact_store("file://server/share")


@pytest.mark.parametrize("uri", ["memory://x", "s3://bucket/prefix", "gs://b/p", "az://c/p"])
def test_urls_open_an_fsspec_store_without_io(uri: str) -> None:
    store = open_artifact_store(uri, storage_options={"key": "do-not-show"})
    assert isinstance(store, FsspecArtifactStore)
    assert store.url == uri
    assert "do-not-show" not in repr(store)


def test_repr_hides_credentials_in_the_url() -> None:
    store = FsspecArtifactStore("s3://user:hunter2@bucket/prefix")
    assert "hunter2" not in repr(store)
    assert "bucket/prefix" in repr(store)


def test_unknown_scheme() -> None:
    with pytest.raises(UnknownArtifactSchemeError) as excinfo:
        open_artifact_store("foo://bar")
    assert isinstance(excinfo.value, InvalidInputError)
    assert excinfo.value.message == (
        "Unknown artifact scheme 'foo'. Registered: abfs, abfss, az, file, gcs, gs, memory, "
        "s3, s3a. Install 'modelhost[s3]' for S3."
    )


@pytest.mark.parametrize("uri", ["", "   "])
def test_empty_location(uri: str) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        open_artifact_store(uri)


def test_fsspec_store_needs_a_scheme() -> None:
    with pytest.raises(InvalidInputError, match="needs a scheme"):
        FsspecArtifactStore("bucket/prefix")


def test_missing_s3fs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from fsspec.registry import _registry

    # Make "import s3fs" fail as on an install without the extra; fsspec caches the
    # class once loaded, so forget that too (both are restored after the test).
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.delitem(_registry, "s3", raising=False)
    store = open_artifact_store("s3://bucket/prefix")
    with pytest.raises(MissingDependencyError) as excinfo:
        store.put_bytes(b"x")
    assert "pip install 'modelhost[s3]'" in excinfo.value.message
    assert excinfo.value.code == "missing_dependency"


def test_missing_package_for_other_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    from fsspec.registry import _registry

    monkeypatch.setitem(sys.modules, "gcsfs", None)
    monkeypatch.delitem(_registry, "gs", raising=False)
    store = open_artifact_store("gs://bucket/prefix")
    with pytest.raises(InvalidInputError, match="needs a package that is not installed"):
        store.exists("0" * 64)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_s3_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.artifacts.conftest import _aws_env

    _aws_env(monkeypatch, tmp_path)
    options: dict[str, Any] = s3_storage_options(f"http://127.0.0.1:{_closed_port()}")
    options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 1}
    store = open_artifact_store("s3://bucket/prefix", storage_options=options)
    for call in (lambda: store.put_bytes(b"x"), lambda: store.get_bytes("0" * 64)):
        with pytest.raises(StoreUnavailableError) as excinfo:
            call()
        # The reason names the failure, never the endpoint, bucket or key.
        assert excinfo.value.message == (
            "artifact store is unavailable: EndpointConnectionError; try again shortly"
        )


def test_s3_missing_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                           tmp_path: Path) -> None:
    from tests.artifacts.conftest import _aws_env

    _aws_env(monkeypatch, tmp_path)
    store = open_artifact_store(
        "s3://no-such-bucket/prefix", storage_options=s3_storage_options(moto_endpoint)
    )
    with pytest.raises(StoreUnavailableError, match="bucket or root does not exist"):
        store.put_bytes(b"x")


def test_s3_without_conditional_writes(s3_bucket: tuple[Any, str], moto_endpoint: str) -> None:
    _, bucket = s3_bucket
    store = FsspecArtifactStore(
        f"s3://{bucket}",
        storage_options=s3_storage_options(moto_endpoint),
        exclusive_writes=False,
    )
    first = store.put_bytes(b"data")
    assert first.created
    assert not store.put_bytes(b"data").created
    assert store.get_bytes(first.digest) == b"data"
    assert list(store.iter_digests()) == [first.digest]
