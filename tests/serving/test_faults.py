"""Models that raise, hang or return the wrong number of rows; corrupted artifacts;
v2 and MLflow routes in-process."""

from __future__ import annotations

import numpy as np
import pytest
from tests.fixtures_models import iris_example, iris_model
from tests.serving.conftest import records, serve

from modelhost import Client
from modelhost.serving import Limits

pytestmark = pytest.mark.anyio


def _register_import_path(client: Client, name: str, target: str) -> None:
    registry = client.registry
    # The real iris model validates the example once; the faulty one is registered by
    # import path with the same signature.
    signature = registry.register(iris_model(), name="reference",
                                  input_example=iris_example()).signature
    mv = registry.register(target, name=name, flavor="python", signature=signature)
    registry.transition(name, mv.version, "staging")
    registry.transition(name, mv.version, "production")


@pytest.mark.parametrize(("target", "status", "fragment"), [
    ("tests.serving.faulty_models:RaisingModel", 500, "it raised ValueError"),
    ("tests.serving.faulty_models:WrongRowsModel", 500, "predictions for"),
])
async def test_a_failing_model_gets_a_sanitized_500(sqlite_client: Client, target: str,
                                                    status: int, fragment: str) -> None:
    _register_import_path(sqlite_client, "faulty", target)
    async with serve(sqlite_client) as (_, http):
        response = await http.post("/v1/models/faulty/predict", json={"inputs": records(3)})
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == "prediction_failed"
        assert fragment in error["message"]
        for secret in ("sk-123", "/etc", "private.key", "Traceback"):
            assert secret not in response.text


async def test_a_hanging_model_answers_504_within_the_deadline(sqlite_client: Client) -> None:
    _register_import_path(sqlite_client, "slow", "tests.serving.faulty_models:SlowModel")
    async with serve(sqlite_client) as (_, http):
        response = await http.post("/v1/models/slow/predict", json={"inputs": records(1)},
                                   headers={"X-Request-Timeout-Ms": "150"})
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "deadline_exceeded"
        bad = await http.post("/v1/models/slow/predict", json={"inputs": records(1)},
                              headers={"X-Request-Timeout-Ms": "soon"})
        assert bad.status_code == 422


async def test_a_corrupted_artifact_never_serves(iris_client: Client) -> None:
    from pathlib import Path

    root = Path(iris_client.settings.resolved_artifacts)
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size > 1000:
            path.chmod(0o644)
            data = bytearray(path.read_bytes())
            data[-1] ^= 0xFF
            path.write_bytes(bytes(data))
    async with serve(iris_client) as (_, http):
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)})
        # Not loaded (and retried later): 503 with Retry-After, and the reason.
        assert response.status_code == 503, response.text
        assert "retry-after" in response.headers
        assert response.json()["error"]["code"] == "model_load_failed"
        assert "failed its integrity check" in response.json()["error"]["message"]
        # A failed version does not keep the server unready: it is listed with why.
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        failed = ready.json()["failed"]["iris"]
        assert failed["version"] == "1.0.0"
        assert "failed its integrity check" in failed["reason"]
        assert ready.json()["serving"] == {} and ready.json()["loading"] == {}


async def test_overload_answers_503_with_retry_after(iris_client: Client) -> None:
    from modelhost.serving import PoolOptions

    async with serve(iris_client, pool=PoolOptions(max_queue_rows=5)) as (_, http):
        # One request larger than the whole queue can never succeed: 413, not 503.
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(6)})
        assert response.status_code == 413, response.text


async def test_v2_infer_in_process(iris_client: Client) -> None:
    X = iris_example(rows=3)
    body = {"id": "req-7", "inputs": [
        {"name": c, "datatype": "FP64", "shape": [3], "data": X[c].tolist()} for c in X]}
    async with serve(iris_client) as (_, http):
        response = await http.post("/v2/models/iris/infer", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["id"] == "req-7"
        assert data["model_version"] == "1.0.0"
        outputs = {o["name"]: o for o in data["outputs"]}
        assert outputs["predict"]["data"] == iris_model().predict(X).tolist()
        assert np.allclose(np.reshape(outputs["predict_proba"]["data"], (3, 3)),
                           iris_model().predict_proba(X))
        pinned = await http.post("/v2/models/iris/versions/1.0.1/infer", json=body)
        assert pinned.json()["model_version"] == "1.0.1"
        meta = (await http.get("/v2/models/iris")).json()
        assert [i["name"] for i in meta["inputs"]] == list(X.columns)
        assert meta["versions"] == ["1.0.0", "1.0.1"]
        missing = await http.get("/v2/models/nope")
        assert missing.status_code == 404
        assert set(missing.json()) == {"error"}
        bad = await http.post("/v2/models/iris/infer", content=b"{",
                              headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert set(bad.json()) == {"error"}
        assert (await http.get("/v2/health/ready")).status_code in (200, 503)
        assert (await http.get("/v2")).json()["name"] == "modelhost"


async def test_mlflow_invocations_in_process(iris_client: Client) -> None:
    X = iris_example(rows=2)
    expected = iris_model().predict(X).tolist()
    split = {"dataframe_split": {"columns": list(X.columns), "data": X.values.tolist()}}
    async with serve(iris_client) as (_, http):
        response = await http.post("/v1/models/iris/invocations", json=split)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        rows = await http.post("/v1/models/iris/invocations",
                               json={"instances": X.values.tolist()})
        assert rows.json() == {"predictions": expected}
        csv = await http.post("/v1/models/iris/invocations",
                              content=X.to_csv(index=False).encode(),
                              headers={"content-type": "text/csv"})
        assert csv.json() == {"predictions": expected}
        wrong = await http.post("/v1/models/iris/invocations", content=b"x",
                                headers={"content-type": "text/plain"})
        assert wrong.status_code == 415
        bad = await http.post("/v1/models/iris/invocations", json={"nope": 1})
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "BAD_REQUEST"
        root = await http.post("/invocations", json=split)
        assert root.status_code == 404
        assert (await http.get("/ping")).status_code == 200


async def test_limits_on_rows(iris_client: Client) -> None:
    async with serve(iris_client, limits=Limits(max_rows=2)) as (_, http):
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(3)})
        assert response.status_code == 413


async def test_a_full_queue_answers_503_with_retry_after(sqlite_client: Client) -> None:
    import asyncio

    from modelhost.serving import PoolOptions

    _register_import_path(sqlite_client, "slow", "tests.serving.faulty_models:SlowModel")
    async with serve(sqlite_client, pool=PoolOptions(max_queue_rows=2)) as (_, http):
        responses = await asyncio.gather(*(
            http.post("/v1/models/slow/predict", json={"inputs": records(1)})
            for _ in range(6)))
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 503 in statuses, statuses
        overloaded = next(r for r in responses if r.status_code == 503)
        assert int(overloaded.headers["retry-after"]) >= 1
        assert overloaded.json()["error"]["code"] == "overloaded"


async def test_a_version_that_fails_to_load_never_disturbs_the_serving_one(
        iris_client: Client) -> None:
    from pathlib import Path

    async with serve(iris_client) as (app, http):
        assert (await http.post("/v1/models/iris/predict", json={"inputs": records(1)})
                ).json()["version"] == "1.0.0"
        # Damage 1.0.1's artifact, then promote it while the server runs.
        mv = iris_client.registry.get_version("iris", "1.0.1")
        root = Path(iris_client.settings.resolved_artifacts)
        for digest in iris_client.artifacts.tree_blobs(mv.artifact_digest):
            blob = root / "sha256" / digest[:2] / digest
            if blob.stat().st_size > 1000:
                blob.chmod(0o644)
                blob.write_bytes(b"damaged")
        iris_client.registry.transition("iris", "1.0.1", "staging")
        iris_client.registry.transition("iris", "1.0.1", "production")
        await app.server.watcher.refresh()
        await app.server.watcher.refresh()
        for _ in range(5):
            response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)})
            assert response.status_code == 200
            assert response.json()["version"] == "1.0.0"
        assert app.server.pool.routes == {"iris": "1.0.0"}
        await app.server.pool.wait_until_ready(timeout_s=10)  # 1.0.1 has failed by now
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["loading"] == {}
        assert ready.json()["failed"]["iris"]["version"] == "1.0.1"
