"""POST /v1/models/{name}/versions: uploads register versions; hostile ones change nothing."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
import skops.io
from tests.fixtures_models import iris_example, iris_model

from modelhost import Client
from modelhost.serving import Limits

from .conftest import serve

pytestmark = pytest.mark.anyio
EXAMPLE = json.dumps(iris_example(rows=3).to_dict(orient="records"))


def _skops_bytes() -> bytes:
    return skops.io.dumps(iris_model())


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _state(client: Client) -> tuple[list[str], list[str]]:
    versions = [f"{m.name}:{v.version}" for m in client.registry.list_models()
                for v in client.registry.list_versions(m.name)]
    root = Path(client.settings.resolved_artifacts)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
    return versions, files


async def test_upload_a_model_file(sqlite_client: Client) -> None:
    async with serve(sqlite_client) as (_, http):
        response = await http.post(
            "/v1/models/iris/versions",
            files={"file": ("model.skops", _skops_bytes())},
            data={"input_example": EXAMPLE, "description": "uploaded"})
        assert response.status_code == 201, response.text
        assert response.json()["version"] == "1.0.0"
        assert response.json()["flavor"] == "sklearn"
    mv = sqlite_client.registry.get_version("iris", "1.0.0")
    assert mv.description == "uploaded" and mv.signature is not None
    assert sqlite_client.audit.list(limit=1)[0].action == "model.register"


async def test_the_lineage_commit_is_the_uploaders_never_the_servers(
        sqlite_client: Client) -> None:
    # The server runs in this repository's checkout: its commit must not be recorded.
    commit = "0123456789abcdef" * 2 + "01234567"
    async with serve(sqlite_client) as (_, http):
        bad = await http.post("/v1/models/iris/versions",
                              files={"file": ("model.skops", _skops_bytes())},
                              data={"input_example": EXAMPLE, "git_commit": "HEAD; rm"})
        assert bad.status_code == 422 and "git_commit" in bad.json()["error"]["message"]
        assert sqlite_client.registry.list_models() == []
        given = await http.post("/v1/models/iris/versions",
                                files={"file": ("model.skops", _skops_bytes())},
                                data={"input_example": EXAMPLE, "git_commit": commit})
        none = await http.post("/v1/models/iris/versions",
                               files={"file": ("model.skops", _skops_bytes())},
                               data={"input_example": EXAMPLE})
        assert given.status_code == none.status_code == 201, (given.text, none.text)
    assert sqlite_client.registry.get_version("iris", "1.0.0").lineage.git_commit == commit
    assert sqlite_client.registry.get_version("iris", "1.0.1").lineage.git_commit is None


async def test_upload_an_archive_and_a_folder(sqlite_client: Client) -> None:
    async with serve(sqlite_client) as (_, http):
        archive = _tgz({"m/model.skops": _skops_bytes()})
        first = await http.post("/v1/models/iris/versions",
                                files={"file": ("model.tar.gz", archive)},
                                data={"input_example": EXAMPLE, "flavor": "sklearn"})
        assert first.status_code == 201, first.text
        second = await http.post("/v1/models/iris/versions",
                                 files=[("file", ("model.skops", _skops_bytes())),
                                        ("file", ("notes/README.md", b"# iris"))],
                                 data={"input_example": EXAMPLE, "flavor": "sklearn"})
        # A scikit-learn model is one file: a folder of several is refused, clearly.
        assert second.status_code == 422
        assert "sklearn flavor" in second.json()["error"]["message"]


@pytest.mark.parametrize(("files", "data", "status", "fragment"), [
    ({"file": ("../../evil.skops", b"x")}, {}, 422, "path"),
    ([("file", ("a/%2e%2e/%2e%2e/evil", b"x")), ("file", ("b", b"y"))], {}, 422, "path"),
    ({"file": ("model.tar.gz", b"not an archive")}, {}, 422, "archive"),
    ({"file": ("model.skops", b"garbage")}, {}, 422, ""),
    ({"file": ("model.skops", b"x")}, {"force": "maybe"}, 422, "force"),
    ({"file": ("model.skops", b"x")}, {"input_example": "{"}, 422, "input_example"),
    ({"file": ("model.skops", b"x")}, {"trust_pickle": "true"}, 422, "unexpected"),
    ({"other": ("model.skops", b"x")}, {}, 422, "unexpected"),
])
async def test_bad_uploads_are_refused_and_change_nothing(
        sqlite_client: Client, files: object, data: dict[str, str], status: int,
        fragment: str) -> None:
    before = _state(sqlite_client)
    async with serve(sqlite_client) as (_, http):
        response = await http.post("/v1/models/iris/versions", files=files, data=data)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"].lower()
    assert "Traceback" not in response.text and "/tmp" not in response.text
    assert _state(sqlite_client) == before


async def test_a_pickle_never_runs(sqlite_client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, (f"touch {marker}",)

    payload = pickle.dumps(Exploit())
    before = _state(sqlite_client)
    async with serve(sqlite_client) as (_, http):
        for name in ("model.pkl", "model.joblib", "model.skops"):
            response = await http.post("/v1/models/iris/versions",
                                       files={"file": (name, payload)})
            assert response.status_code == 422, response.text
        archived = await http.post("/v1/models/iris/versions",
                                   files={"file": ("m.tgz", _tgz({"m/model.pkl": payload}))})
        assert archived.status_code == 422
    assert not marker.exists()
    assert _state(sqlite_client) == before


async def test_uploads_are_bounded(sqlite_client: Client) -> None:
    limits = Limits(max_upload_bytes=64 * 1024, max_body_bytes=16 * 1024)
    async with serve(sqlite_client, limits=limits) as (_, http):
        big = await http.post("/v1/models/iris/versions",
                              files={"file": ("model.skops", b"\0" * (128 * 1024))})
        assert big.status_code == 413
        bomb = _tgz({"m/model.skops": b"\0" * (1 << 20)})
        assert len(bomb) < 64 * 1024
        exploded = await http.post("/v1/models/iris/versions",
                                   files={"file": ("m.tgz", bomb)})
        assert exploded.status_code == 413
        # Chunked bodies declare no length: the limit still holds while reading.
        async def chunks() -> object:
            for _ in range(64):
                yield b"x" * 1024

        chunked = await http.post("/v1/models/iris/versions/1.0.0/stage",
                                  content=chunks(),  # type: ignore[arg-type]
                                  headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        assert (await http.post("/v1/models/iris/versions", content=b"{}",
                                headers={"content-type": "application/json"})).status_code == 415
    assert _state(sqlite_client) == ([], [])


async def test_only_deployers_and_admins_upload(sqlite_client: Client) -> None:
    keys = {role: sqlite_client.keys.create(name=role, role=role).secret
            for role in ("predictor", "viewer", "deployer")}
    async with serve(sqlite_client, auth=True) as (_, http):
        for role, status in (("predictor", 403), ("viewer", 403), ("deployer", 201)):
            response = await http.post(
                "/v1/models/iris/versions", files={"file": ("model.skops", _skops_bytes())},
                data={"input_example": EXAMPLE},
                headers={"Authorization": f"Bearer {keys[role]}"})
            assert response.status_code == status, (role, response.text)
