"""Artifact store backends for the shared behaviour suite: a local folder, fsspec's
in-memory filesystem, and a real S3 API served by moto on 127.0.0.1.

Each backend also exposes raw access to its objects (bypassing the store), which the
tests use to damage blobs and to prove nothing was written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelhost.artifacts import ArtifactStore, open_artifact_store
from modelhost.artifacts.base import blob_key

BACKENDS = ["local", "memory", "s3"]


@dataclass
class Backend:
    name: str
    store: ArtifactStore
    read_raw: Callable[[str], bytes]
    write_raw: Callable[[str, bytes], None]
    raw_keys: Callable[[], list[str]]

    def corrupt(self, digest: str) -> None:
        """Flip one bit of the stored blob, behind the store's back."""
        key = blob_key(digest)
        data = bytearray(self.read_raw(key))
        if data:
            data[0] ^= 0x01
        else:
            data = bytearray(b"x")
        self.write_raw(key, bytes(data))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    # Port 0: the OS picks a free port, read back below.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Fake credentials and no shared config, so nothing real can be contacted or used.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def s3_storage_options(endpoint: str) -> dict[str, Any]:
    return {"client_kwargs": {"endpoint_url": endpoint}, "key": "testing", "secret": "testing"}


@pytest.fixture
def s3_bucket(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Any, str]]:
    """A fresh bucket on the moto server and a boto3 client for raw access."""
    import boto3

    _aws_env(monkeypatch, tmp_path)
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = f"artifacts-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    client.close()


def _local_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "store"
    store = open_artifact_store(str(root))

    def write_raw(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o644)  # blobs are stored read-only
        path.write_bytes(data)

    def raw_keys() -> list[str]:
        if not root.exists():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    return Backend("local", store, lambda key: (root / key).read_bytes(), write_raw, raw_keys)


def _memory_backend() -> tuple[Backend, Callable[[], None]]:
    import fsspec

    fs = fsspec.filesystem("memory")
    name = f"artifacts-{uuid.uuid4().hex[:12]}"
    store = open_artifact_store(f"memory://{name}")

    def raw_keys() -> list[str]:
        prefix = f"/{name}/"
        return sorted(p[len(prefix) :] for p in fs.find(f"/{name}"))

    def cleanup() -> None:
        if fs.exists(f"/{name}"):
            fs.rm(f"/{name}", recursive=True)

    backend = Backend(
        "memory",
        store,
        lambda key: fs.cat_file(f"/{name}/{key}"),
        lambda key, data: fs.pipe_file(f"/{name}/{key}", data),
        raw_keys,
    )
    return backend, cleanup


def _s3_backend(client: Any, bucket: str, endpoint: str) -> Backend:
    store = open_artifact_store(
        f"s3://{bucket}/models", storage_options=s3_storage_options(endpoint)
    )

    def read_raw(key: str) -> bytes:
        body: bytes = client.get_object(Bucket=bucket, Key=f"models/{key}")["Body"].read()
        return body

    def write_raw(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"models/{key}", Body=data)

    def raw_keys() -> list[str]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix="models/")
        return sorted(item["Key"][len("models/") :] for item in listing.get("Contents", []))

    return Backend("s3", store, read_raw, write_raw, raw_keys)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The same store behaviour on each backend."""
    if request.param == "local":
        yield _local_backend(tmp_path)
    elif request.param == "memory":
        memory, cleanup = _memory_backend()
        yield memory
        cleanup()
    else:
        client, bucket = request.getfixturevalue("s3_bucket")
        yield _s3_backend(client, bucket, request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def store(backend: Backend) -> ArtifactStore:
    return backend.store
