"""End to end: a job survives its server. A real `modelhost serve --workers 2` takes a
job over a slow model (two seconds per model call, three calls); the server is killed
with SIGKILL while the job runs, and started again: once the dead worker's lease has run
out (3 s here) the job runs again from the start and succeeds, on its second attempt. A
job submitted while no server runs is run by the next one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest

from modelhost import Client, Settings
from modelhost.batch import jobs as job_module
from tests.fixtures_models import iris, iris_example, iris_model
from tests.serving.server import ServerProcess, server_env

pytestmark = pytest.mark.slow

DEADLINE_S = 90.0
ROWS = 3 * job_module.CHUNK_ROWS  # three model calls of two seconds


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("jobs") / "home"
    with Client(Settings(home=home)) as client:
        registry = client.registry
        iris_version = registry.register(iris_model(), name="iris",
                                         input_example=iris_example())
        registry.transition("iris", iris_version.version, "staging")
        registry.transition("iris", iris_version.version, "production")
        slow = registry.register("tests.serving.server:SlowModel", name="slow",
                                 flavor="python", signature=iris_version.signature)
        registry.transition("slow", slow.version, "staging")
        registry.transition("slow", slow.version, "production")
    return home


@pytest.fixture
def server(home: Path) -> Iterator[ServerProcess]:
    logs = home.parent / "logs"
    logs.mkdir(exist_ok=True)
    process = ServerProcess(args=["--workers", "2"], log_dir=logs,
                            env=server_env(home, MODELHOST_JOBS_LEASE_S="3"))
    try:
        yield process
    finally:
        if process.running:
            process.kill()


def status(server: ServerProcess, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.base_url}/v1/jobs/{job_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_for(server: ServerProcess, job_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        body = status(server, job_id)
        if body["status"] in states or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_job_survives_its_server_being_killed(server: ServerProcess, home: Path) -> None:
    X, _ = iris()
    rows = pd.concat([X] * (ROWS // len(X) + 1), ignore_index=True).head(ROWS)
    server.start()
    answer = httpx.post(f"{server.base_url}/v1/models/slow/jobs", timeout=60,
                        files={"file": ("rows.csv", rows.to_csv(index=False).encode())})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    running = wait_for(server, job_id, {"running", "succeeded", "failed"})
    assert running["status"] == "running", running
    killed_at = time.monotonic()
    server.kill()  # SIGKILL: no drain, no release; the lease stays until it runs out

    # Submitted while no server runs: it waits in the database.
    with Client(Settings(home=home), migrate=False) as client:
        queued = client.jobs.submit_rows("iris", None,
                                         iris_example(rows=7).to_dict(orient="records"))
        assert client.jobs.get(job_id).status.value == "running"  # as the dead left it

    server.start()
    done = wait_for(server, job_id, {"succeeded", "failed"})
    assert (done["status"], done["rows"], done["rejected"], done["attempts"]) == (
        "succeeded", ROWS, 0, 2), f"{done}\n{server.output()}"
    assert time.monotonic() - killed_at > 3  # not before the dead worker's lease ran out
    result = httpx.get(f"{server.base_url}{done['result_uri']}", timeout=60)
    predictions = [orjson.loads(line) for line in result.content.splitlines()]
    assert [p["row"] for p in predictions] == list(range(ROWS))  # whole, once each
    assert {p["prediction"] for p in predictions} == {0}  # SlowModel's answer

    other = wait_for(server, queued.id, {"succeeded", "failed"})
    assert (other["status"], other["rows"], other["attempts"]) == ("succeeded", 7, 1)
    assert server.terminate() == 0
