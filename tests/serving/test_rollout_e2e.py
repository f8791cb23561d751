"""End to end: rollouts driven by the controller of a real ``modelhost serve --workers 2``.

Four versions of iris are registered: 1.0.0 (production), 1.0.1 (as good), 1.0.2 (raises
on a quarter of the rows: long petals) and 1.0.3 (always answers the most frequent
class: a third right). With real traffic from both workers, in this order:

1. a canary of the broken 1.0.2 is rolled back by the controller, with an event that
   names the error rate it saw, and 1.0.0 keeps serving;
2. a canary of 1.0.1 is promoted through every step;
3. a blue-green switch back to 1.0.0 and a rollback to 1.0.1 under steady load lose no
   request;
4. an A/B test of 1.0.3 against 1.0.1 with true labels as feedback declares 1.0.1
   better and, with auto_promote, rolls 1.0.3 back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from tests.serving.server import ServerProcess, server_env

from modelhost import Client, Settings

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEADLINE_S = 60.0  # generous: a shared machine may be slow, a pass is fast


def iris_frame() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_iris(as_frame=True)
    X = bunch.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return X, bunch.target


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("rollout-e2e") / "home"
    X, y = iris_frame()
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings) as client:
        registry = client.registry
        first = registry.register(LogisticRegression(max_iter=1000).fit(X, y), name="iris",
                                  input_example=X.head(5))
        registry.transition("iris", first.version, "staging")
        registry.transition("iris", first.version, "production")
        registry.register(LogisticRegression(C=0.5, max_iter=1000).fit(X, y), name="iris",
                          input_example=X.head(5))
        registry.register("tests.serving.faulty_models:FlakyModel", name="iris",
                          flavor="python", signature=first.signature)
        registry.register(DummyClassifier(strategy="most_frequent").fit(X, y), name="iris",
                          input_example=X.head(5))
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[ServerProcess]:
    logs = home.parent / "logs"
    logs.mkdir()
    process = ServerProcess(args=["--workers", "2"],
                            env=server_env(home, MODELHOST_MONITOR_FLUSH_S="0.3",
                                           MODELHOST_ROLLOUT_INTERVAL_S="0.5"),
                            log_dir=logs)
    process.start()
    try:
        yield process
    finally:
        if process.running:
            code = process.terminate()
            assert code == 0, f"exit status {code}\n{process.output()}"


def traffic(base_url: str, rows: pd.DataFrame, *, ids: str | None = None
            ) -> list[tuple[int, str]]:
    """One request per row, four connections at a time (new connections, so both workers
    take some); returns (status, answering version) per request."""
    bodies = [(f"{ids}-{i}" if ids else None, {"inputs": [row]})
              for i, row in enumerate(rows.to_dict(orient="records"))]

    def post(chunk: list[tuple[str | None, dict[str, Any]]]) -> list[tuple[int, str]]:
        out = []
        with httpx.Client(base_url=base_url, timeout=10,
                          headers={"Connection": "close"}) as http:
            for rid, body in chunk:
                headers = {"X-Request-Id": rid} if rid else {}
                r = http.post("/v1/models/iris/predict", json=body, headers=headers)
                out.append((r.status_code, r.headers.get("x-model-version", "")))
        return out

    with ThreadPoolExecutor(4) as pool:
        return [x for part in pool.map(post, [bodies[i::4] for i in range(4)]) for x in part]


def deployment(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/v1/deployments/iris")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def until(http: httpx.Client, server: ServerProcess, rows: pd.DataFrame, state: str,
          **traffic_kwargs: Any) -> dict[str, Any]:
    """Send ``rows`` again and again until the deployment is in ``state``."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        traffic(server.base_url, rows, **traffic_kwargs)
        body = deployment(http)
        if body["state"] == state or time.monotonic() > deadline:
            events = http.get("/v1/deployments/iris/events").json()["events"]
            assert body["state"] == state, f"{body}\n{events}\n{server.output()[-3000:]}"
            return body
        time.sleep(0.3)


def stages(home: Path) -> dict[str, str]:
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings, migrate=False) as client:
        return {v.version: v.stage.value for v in client.registry.list_versions("iris")}


def test_a_broken_canary_is_rolled_back_with_the_error_rate_it_saw(
        server: ServerProcess, home: Path) -> None:
    X, _ = iris_frame()
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        started = http.post("/v1/deployments/iris", json={
            "version": "1.0.2", "strategy": "canary",
            "options": {"steps": [30, 100], "min_requests": 40, "step_duration_s": 60}})
        assert started.status_code == 202, started.text
        until(http, server, X, "rolled_back")
        rollback = http.get("/v1/deployments/iris/events").json()["events"][-1]
        assert rollback["kind"] == "rollback", rollback
        assert rollback["actor"] == "rollout-controller"
        assert "the candidate's error rate is" in rollback["reason"]
        assert rollback["numbers"]["candidate_error_rate"] > 0.02
        time.sleep(1.5)  # every worker reloads its routing within 0.5 s
        answers = traffic(server.base_url, X.head(40))
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} == {"1.0.0"}
    assert stages(home)["1.0.0"] == "production"


def test_a_good_canary_is_promoted_through_every_step(server: ServerProcess,
                                                      home: Path) -> None:
    X, _ = iris_frame()
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        started = http.post("/v1/deployments/iris", json={
            "version": "1.0.1", "strategy": "canary",
            # Not a latency test (the controller's tests are): a shared machine's noise in
            # the p99 of a few dozen requests must not roll a good candidate back.
            "options": {"steps": [25, 50, 100], "min_requests": 30, "step_duration_s": 1,
                        "max_p99_ratio": 100}})
        assert started.status_code == 202, started.text
        seen: set[str] = set()
        deadline = time.monotonic() + DEADLINE_S
        while deployment(http)["state"] != "promoted" and time.monotonic() < deadline:
            seen |= {v for status, v in traffic(server.base_url, X) if status == 200}
        events = http.get("/v1/deployments/iris/events").json()["events"]
        kinds = [e["kind"] for e in events if e["rollout_id"] == started.json()["rollout_id"]]
        assert kinds == ["deploy", "step", "promote"], events
    assert seen == {"1.0.0", "1.0.1"}  # both arms answered during the canary
    assert stages(home)["1.0.1"] == "production" and stages(home)["1.0.0"] == "archived"


def test_blue_green_and_rollback_lose_no_request_under_load(server: ServerProcess,
                                                            home: Path) -> None:
    X, _ = iris_frame()
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            while not stop.is_set():
                r = http.post("/v1/models/iris/predict",
                              json={"inputs": [X.iloc[len(results) % 150].to_dict()]})
                results.append((r.status_code, r.headers.get("x-model-version", "")))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            time.sleep(1.0)
            switched = http.post("/v1/deployments/iris", json={
                "version": "1.0.0", "strategy": "blue-green"})
            assert switched.status_code == 202, switched.text
            assert switched.json()["state"] == "promoted"
            _wait_for_version(results, "1.0.0")
            back = http.post("/v1/deployments/iris/rollback", json={"reason": "drill"})
            assert back.status_code == 200, back.text
            _wait_for_version(results, "1.0.1")
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    statuses = {status for status, _ in results}
    assert statuses == {200}, [r for r in results if r[0] != 200][:5]
    assert len(results) > 200
    assert stages(home)["1.0.1"] == "production"


def _wait_for_version(results: list[tuple[int, str]], version: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if results and all(v == version for _, v in results[-20:]):
            return
        time.sleep(0.1)
    raise AssertionError(f"still not {version}: {results[-5:]}")


def test_an_ab_test_with_feedback_declares_the_better_model(server: ServerProcess,
                                                            home: Path) -> None:
    X, y = iris_frame()
    rng = np.random.default_rng(7)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        started = http.post("/v1/deployments/iris", json={
            "version": "1.0.3", "strategy": "ab",
            "options": {"split": 0.5, "min_samples": 100, "auto_promote": True}})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + DEADLINE_S
        sent = 0
        while deployment(http)["state"] == "progressing" and time.monotonic() < deadline:
            rows = rng.integers(0, len(X), size=200)
            frame = X.iloc[rows].reset_index(drop=True)
            traffic(server.base_url, frame, ids=f"ab{sent}")
            items = [{"request_id": f"ab{sent}-{i}", "label": int(y.iloc[int(row)])}
                     for i, row in enumerate(rows)]
            answer = http.post("/v1/feedback", json={"items": items})
            assert answer.status_code == 202, answer.text
            sent += 1
            time.sleep(1.0)
        body = deployment(http)
        events = http.get("/v1/deployments/iris/events").json()["events"]
        assert body["state"] == "rolled_back", f"{body}\n{events}\n{server.output()[-3000:]}"
        last = events[-1]
        assert last["kind"] == "rollback" and "the stable version is better" in last["reason"]
        assert last["numbers"]["decision"] == "stable_better"
        assert last["numbers"]["lift"] < -0.3  # a third right against nearly all
    assert stages(home)["1.0.1"] == "production"


def test_a_canary_continues_after_the_server_running_it_is_killed(home: Path,
                                                                   server: ServerProcess) -> None:
    """The controller's state is the database's: a replica killed mid-canary (SIGKILL,
    no shutdown) leaves a rollout that another replica's controller finishes once the
    dead one's lease has expired."""
    X, _ = iris_frame()
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        started = http.post("/v1/deployments/iris", json={
            "version": "1.0.0", "strategy": "canary",
            "options": {"steps": [20, 60, 100], "min_requests": 20, "step_duration_s": 1,
                        "max_p99_ratio": 100}})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + DEADLINE_S
        while deployment(http)["step"] < 1 and time.monotonic() < deadline:
            traffic(server.base_url, X.head(60))
        events = http.get("/v1/deployments/iris/events").json()["events"][-5:]
        assert deployment(http)["step"] >= 1, (events, server.output()[-3000:])
    server.kill()  # mid-canary: the lease holder dies without releasing anything
    logs = home.parent / "logs-replica"
    logs.mkdir()
    replica = ServerProcess(args=["--workers", "1"],
                            env=server_env(home, MODELHOST_MONITOR_FLUSH_S="0.3",
                                           MODELHOST_ROLLOUT_INTERVAL_S="0.5"),
                            log_dir=logs)
    replica.start()
    try:
        with httpx.Client(base_url=replica.base_url, timeout=30) as http:
            body = until(http, replica, X.head(60), "promoted")
            assert body["stable"] == "1.0.0"
            events = http.get("/v1/deployments/iris/events").json()["events"]
            kinds = [e["kind"] for e in events
                     if e["rollout_id"] == started.json()["rollout_id"]]
            assert kinds[0] == "deploy" and kinds[-1] == "promote" and "step" in kinds
    finally:
        code = replica.terminate()
        assert code == 0, replica.output()
    assert stages(home)["1.0.0"] == "production"
