"""`/v1/models/{name}/jobs` and `/v1/jobs` on the real ASGI app, with its job worker
running: rows, an uploaded file and a dataset version in, predictions and rejected rows
out as JSON lines; bad submissions refused with nothing queued; and who sees which job
(a predictor its own, a viewer every one)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import TODAY
from tests.fixtures_models import iris_example

from modelhost import Client
from modelhost.batch.worker import WorkerOptions
from modelhost.serving import PoolOptions, ServerOptions, create_app
from modelhost.serving.server import JobOptions

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serve(client: Client, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(client.registry, options=ServerOptions(
        pool=PoolOptions(reload_interval_s=0.2),
        jobs=JobOptions(worker=WorkerOptions(poll_s=0.1)), **options),
        keys=client.keys, audit=client.audit, leases=client.leases, jobs=client.jobs,
        today=lambda: TODAY)
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def finished(http: httpx.AsyncClient, job_id: str, **kwargs: Any) -> dict[str, Any]:
    for _ in range(500):
        answer = await http.get(f"/v1/jobs/{job_id}", **kwargs)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def ndjson(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-ndjson"
    return [orjson.loads(line) for line in answer.content.splitlines()]


async def test_a_job_from_submission_to_result(iris_client: Client) -> None:
    rows = iris_example(rows=10).to_dict(orient="records")
    async with serve(iris_client) as http:
        answer = await http.post("/v1/models/iris/jobs", json={"inputs": rows})
        assert answer.status_code == 202, answer.text
        submitted = answer.json()
        assert (submitted["status"], submitted["version"], submitted["result_uri"]) == (
            "queued", "1.0.0", None)
        body = await finished(http, submitted["job_id"])
        assert (body["status"], body["rows"], body["rejected"], body["error"]) == (
            "succeeded", 10, 0, None)
        assert body["result_uri"] == f"/v1/jobs/{submitted['job_id']}/result"
        result = ndjson(await http.get(body["result_uri"]))
        expected = iris_client.predict("iris", iris_example(rows=10))
        assert [r["prediction"] for r in result] == expected.predictions
        assert (await http.get(f"/v1/jobs/{submitted['job_id']}/rejects")).status_code == 404
        listed = (await http.get("/v1/jobs")).json()["jobs"]
        assert [j["job_id"] for j in listed] == [submitted["job_id"]]

        # Pinned with X-Model-Version, from an uploaded CSV with a bad row.
        frame = iris_example(rows=4).astype(object)
        frame.iloc[1, 0] = "oops"
        answer = await http.post(
            "/v1/models/iris/jobs", headers={"X-Model-Version": "1.0.1"},
            files={"file": ("rows.csv", frame.to_csv(index=False).encode(), "text/csv")})
        assert answer.status_code == 202, answer.text
        body = await finished(http, answer.json()["job_id"])
        assert (body["version"], body["rows"], body["rejected"]) == ("1.0.1", 3, 1)
        refused = ndjson(await http.get(body["rejects_uri"]))
        assert [r["row"] for r in refused] == [1] and "sepal_length" in refused[0]["reason"]


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"json": {"inputs": [{"a": 1}]}, "url": "/v1/models/nope/jobs"}, 404, "nope"),
    ({"json": {"inputs": [{"a": 1}]}, "headers": {"X-Model-Version": "7.0.0"}}, 404, "7.0.0"),
    ({"json": {"input_uri": "dataset://missing"}}, 404, "missing"),
    ({"json": {"input_uri": "/etc/passwd"}}, 422, "dataset://"),
    ({"json": {"inputs": []}}, 422, "inputs"),
    ({"json": {"rows": [1]}}, 422, "inputs"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
     "not valid JSON"),
    ({"content": b"a,b", "headers": {"content-type": "text/csv"}}, 415, "text/csv"),
    ({"files": {"file": ("rows.xlsx", b"a,b\n1,2\n")}}, 422, ".csv or .parquet"),
    ({"files": {"data": ("rows.csv", b"a,b\n1,2\n")}}, 422, "'file'"),
])
async def test_bad_submissions_queue_nothing(iris_client: Client, kwargs: dict[str, Any],
                                             status: int, message: str) -> None:
    url = kwargs.pop("url", "/v1/models/iris/jobs")
    async with serve(iris_client) as http:
        answer = await http.post(url, **kwargs)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"]["message"]
        assert (await http.get("/v1/jobs")).json()["jobs"] == []
    assert iris_client.jobs.list() == []


async def test_a_predictor_sees_its_own_jobs_and_a_viewer_every_one(
        iris_client: Client) -> None:
    keys = {role: iris_client.keys.create(name=f"{role}-{n}", role=role).secret
            for n, role in enumerate(("predictor", "viewer"))}
    other = iris_client.keys.create(name="other", role="predictor").secret
    wine_only = iris_client.keys.create(name="wine", role="predictor",
                                        models=["wine"]).secret

    def auth(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    rows = iris_example(rows=2).to_dict(orient="records")
    async with serve(iris_client, auth=True) as http:
        assert (await http.post("/v1/models/iris/jobs", json={"inputs": rows})
                ).status_code == 401
        assert (await http.post("/v1/models/iris/jobs", json={"inputs": rows},
                                headers=auth(keys["viewer"]))).status_code == 403
        assert (await http.post("/v1/models/iris/jobs", json={"inputs": rows},
                                headers=auth(wine_only))).status_code == 403
        answer = await http.post("/v1/models/iris/jobs", json={"inputs": rows},
                                 headers=auth(keys["predictor"]))
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        body = await finished(http, job_id, headers=auth(keys["predictor"]))
        assert body["status"] == "succeeded"
        # Another predictor: not found (nothing said about other keys' jobs).
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
            assert (await http.get(path, headers=auth(other))).status_code == 404
        assert (await http.get("/v1/jobs", headers=auth(other))).json()["jobs"] == []
        # A viewer reads every job and its result.
        assert (await http.get(f"/v1/jobs/{job_id}/result",
                               headers=auth(keys["viewer"]))).status_code == 200
        listed = (await http.get("/v1/jobs", headers=auth(keys["viewer"]))).json()["jobs"]
        assert [j["job_id"] for j in listed] == [job_id]
    stored = iris_client.jobs.get(job_id)
    assert stored.submitted_by.startswith("key:") and "predictor-0" in stored.submitted_by
    assert stored.created_at <= dt.datetime.now(dt.timezone.utc)
