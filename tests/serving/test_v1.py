"""Our v1 prediction API on the real ASGI app: shapes, pinning, errors of §3.6."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest
from tests.fixtures_models import iris_example, iris_model
from tests.serving.conftest import records, serve

from modelhost import Client

pytestmark = pytest.mark.anyio


async def test_predict_routes_to_production(iris_client: Client) -> None:
    async with serve(iris_client) as (app, http):
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(4)})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "iris"
        assert body["version"] == "1.0.0"
        assert body["predictions"] == iris_model().predict(iris_example(rows=4)).tolist()
        expected = iris_model().predict_proba(iris_example(rows=4))
        assert np.allclose(body["probabilities"], expected)
        assert response.headers["x-model-version"] == "1.0.0"
        assert response.headers["x-request-id"] == body["request_id"]
        # All-double signature and a verified array path: no pandas on the hot path.
        assert app.server.pool._served[("iris", "1.0.0")].scorer.as_array


async def test_columnar_input_and_pinning(iris_client: Client) -> None:
    columns = iris_example(rows=3).to_dict(orient="list")
    async with serve(iris_client) as (_, http):
        pinned = await http.post("/v1/models/iris/predict", json={"inputs": columns},
                                 headers={"X-Model-Version": "1.0.1"})
        assert pinned.status_code == 200, pinned.text
        assert pinned.json()["version"] == "1.0.1"
        explicit = await http.post("/v1/models/iris/versions/1.0.1/predict",
                                   json={"inputs": columns})
        assert explicit.json()["predictions"] == pinned.json()["predictions"]
        iris_client.registry.set_alias("iris", "challenger", "1.0.1")
        by_alias = await http.post("/v1/models/iris/versions/challenger/predict",
                                   json={"inputs": columns})
        assert by_alias.json()["version"] == "1.0.1"


async def test_request_id_is_echoed(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)},
                                   headers={"X-Request-Id": "abc-123"})
        assert response.json()["request_id"] == "abc-123"
        assert response.headers["x-request-id"] == "abc-123"


def _error(response: object) -> dict:  # type: ignore[type-arg]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert {"code", "message", "request_id"} <= set(body["error"])
    text = response.text  # type: ignore[attr-defined]
    assert "Traceback" not in text and "/home" not in text and "site-packages" not in text
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"", 400, "empty"),
    (b"{not json", 400, "not valid JSON"),
    (b'{"inputs": [{"sepal_length": NaN}]}', 400, "not valid JSON"),
    (b'{"inputs": [{"sepal_length": 1e999}]}', 400, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, "not valid JSON"),
    (b'{"rows": []}', 422, '"inputs"'),
    (b'{"inputs": [], "extra": 1}', 422, "unexpected field"),
    (b'{"inputs": "x"}', 422, "inputs"),
    (b'{"inputs": []}', 422, "row"),
    (b'{"inputs": [{"sepal_length": "a", "sepal_width": 1, "petal_length": 1, '
     b'"petal_width": 1}]}', 422, "column 'sepal_length': expected double, got string at row 0"),
    (b'{"inputs": [{"sepal_length": 1}]}', 422, "required column is missing"),
    (b'{"inputs": {"sepal_length": [1, 2], "sepal_width": [1], "petal_length": [1, 2], '
     b'"petal_width": [1, 2]}}', 422, "like the other columns"),
])
async def test_bad_bodies(iris_client: Client, body: bytes, status: int, fragment: str) -> None:
    async with serve(iris_client) as (_, http):
        response = await http.post("/v1/models/iris/predict", content=body,
                                   headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        assert fragment.lower() in _error(response)["message"].lower()


async def test_not_found_wrong_type_and_limits(iris_client: Client) -> None:
    async with serve(iris_client, limits=__import__(
            "modelhost.serving", fromlist=["Limits"]).Limits(max_body_bytes=4096,
                                                              max_rows=10)) as (_, http):
        missing = await http.post("/v1/models/nope/predict", json={"inputs": records(1)})
        assert missing.status_code == 404
        assert _error(missing)["code"] == "not_found"
        no_version = await http.post("/v1/models/iris/versions/9.9.9/predict",
                                     json={"inputs": records(1)})
        assert no_version.status_code == 404
        bad_pin = await http.post("/v1/models/iris/predict", json={"inputs": records(1)},
                                  headers={"X-Model-Version": "nope"})
        assert bad_pin.status_code == 404
        wrong_type = await http.post("/v1/models/iris/predict", content=b"a=1",
                                     headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 415
        too_many = await http.post("/v1/models/iris/predict", json={"inputs": records(11)})
        assert too_many.status_code == 413
        big = orjson.dumps({"inputs": records(150) * 3})
        assert (await http.post("/v1/models/iris/predict", content=big,
                                headers={"content-type": "application/json"})
                ).status_code == 413
        bomb = gzip.compress(b'{"inputs": [' + b" " * 10_000_000 + b"]}")
        response = await http.post("/v1/models/iris/predict", content=bomb,
                                   headers={"content-type": "application/json",
                                            "content-encoding": "gzip"})
        assert response.status_code == 413
        small = gzip.compress(orjson.dumps({"inputs": records(2)}))
        response = await http.post("/v1/models/iris/predict", content=small,
                                   headers={"content-type": "application/json",
                                            "content-encoding": "gzip"})
        assert response.status_code == 200, response.text


async def test_deprecated_and_sunset_versions(iris_client: Client) -> None:
    from tests.conftest import TODAY

    iris_client.registry.deprecate("iris", "1.0.1", sunset=TODAY)
    async with serve(iris_client) as (app, http):
        response = await http.post("/v1/models/iris/versions/1.0.1/predict",
                                   json={"inputs": records(1)})
        assert response.status_code == 200
        assert response.headers["deprecation"] == "true"
        assert response.headers["sunset"].endswith("23:59:59 GMT")
        app.server.predictor._today = lambda: TODAY.replace(day=TODAY.day + 1)
        gone = await http.post("/v1/models/iris/versions/1.0.1/predict",
                               json={"inputs": records(1)})
        assert gone.status_code == 410
        assert _error(gone)["code"] == "gone"


async def test_model_without_production_version(sqlite_client: Client) -> None:
    sqlite_client.registry.register(iris_model(), name="iris", input_example=iris_example())
    async with serve(sqlite_client) as (_, http):
        response = await http.post("/v1/models/iris/predict", json={"inputs": records(1)})
        assert response.status_code == 404
        assert "no production version" in _error(response)["message"]
        pinned = await http.post("/v1/models/iris/predict", json={"inputs": records(1)},
                                 headers={"X-Model-Version": "1.0.0"})
        assert pinned.status_code == 200


async def test_operations_endpoints(iris_client: Client) -> None:
    async with serve(iris_client) as (app, http):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        if ready.status_code == 503:  # still loading in the background: true readiness
            assert ready.json()["loading"] == {"iris": "1.0.0"}
            await app.server.pool.wait_until_ready(timeout_s=10)
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["serving"] == {"iris": "1.0.0"}
        await http.post("/v1/models/iris/predict", json={"inputs": records(2)})
        metrics = (await http.get("/metrics")).text
        assert 'modelhost_requests_total{model="iris",protocol="v1",status="200",' \
               'version="1.0.0"} 1.0' in metrics
        assert "modelhost_batch_size_rows_bucket" in metrics
        assert "modelhost_model_load_seconds_count" in metrics
        unknown = await http.get("/nope")
        assert unknown.status_code == 404
        assert _error(unknown)["code"] == "not_found"


async def test_openapi_documents_each_model_with_its_signature(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        schema = (await http.get("/openapi.json")).json()
        route = schema["paths"]["/v1/models/iris/predict"]["post"]
        content = route["requestBody"]["content"]["application/json"]
        item = content["schema"]["properties"]["inputs"]["items"]
        assert item["properties"]["sepal_length"] == {"type": "number", "format": "double"}
        assert item["required"] == ["sepal_length", "sepal_width", "petal_length",
                                    "petal_width"]
        assert len(content["example"]["inputs"]) == 5
        assert "/v2/models/{name}/infer" in schema["paths"]
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()


async def test_made_up_names_do_not_create_metric_series(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        for i in range(5):
            await http.post(f"/v1/models/made-up-{i}/predict", json={"inputs": records(1)},
                            headers={"X-Model-Version": f"{i}.0.0"})
        text = (await http.get("/metrics")).text
        assert "made-up" not in text
        assert 'modelhost_requests_total{model="-",protocol="v1",status="404",version="-"} 5.0' \
            in text
