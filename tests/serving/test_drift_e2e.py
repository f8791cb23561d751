"""End to end: drift, feedback, an alert and its rollback, from a real
``modelhost serve --workers 2``.

Two versions of an iris LogisticRegression are registered with the profile of their
training inputs, the second promoted over the first; each worker's flusher writes its
live profile every half second. Traffic drawn from the training rows does not drift;
traffic with two features shifted drifts on exactly those two, and the report counts the
requests of both workers. Then feedback with half of the labels wrong makes the live
accuracy fall below an alert rule's threshold: the server's own evaluation (every
second here) rolls production back to the first version, and the event says why.

Sizes: 400 requests of one row per phase. Over 300 seeds of this sampling the smallest
Kolmogorov-Smirnov p-value of an unshifted feature was 0.23 and the largest of a shifted
one 2e-10 (the threshold is 0.05), so the seeded draw below is far from either edge.
"""

from __future__ import annotations

import contextlib
import sqlite3
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
from sklearn.linear_model import LogisticRegression
from tests.serving.server import ServerProcess, server_env

from modelhost import Client, Settings

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SHIFT = {"sepal_width": 1.5, "petal_length": 3.5}  # 3.5 and 2 standard deviations
REQUESTS = 400  # per phase, one row each
SEED = 20261204
DEADLINE_S = 20.0


def iris_frame() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_iris(as_frame=True)
    X = bunch.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    assert list(X.columns) == COLUMNS
    return X, bunch.target


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("drift-e2e") / "home"
    X, y = iris_frame()
    model = LogisticRegression(max_iter=1000).fit(X, y)
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings) as client:
        registry = client.registry
        for version in (LogisticRegression(C=0.1, max_iter=1000).fit(X, y), model):
            mv = registry.register(version, name="iris", input_example=X.head(5),
                                   reference_data=X.assign(target=y),
                                   reference_source="sklearn's iris")
            registry.transition("iris", mv.version, "staging")
            registry.transition("iris", mv.version, "production")
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[ServerProcess]:
    logs = home.parent / "logs"
    logs.mkdir()
    process = ServerProcess(args=["--workers", "2"],
                            env=server_env(home, MODELHOST_MONITOR_FLUSH_S="0.5",
                                           MODELHOST_ALERTS_INTERVAL_S="1"),
                            log_dir=logs)
    process.start()
    try:
        yield process
    finally:
        if process.running:
            code = process.terminate()
            assert code == 0, f"exit status {code}\n{process.output()}"


def post_rows(base_url: str, frame: pd.DataFrame) -> list[str]:
    """One request per row, each on a new connection (so that both workers accept some),
    four at a time; returns the versions that answered."""
    bodies = [{"inputs": [row]} for row in frame.to_dict(orient="records")]

    def post(chunk: list[dict[str, Any]]) -> list[str]:
        versions = []
        with httpx.Client(base_url=base_url, timeout=10,
                          headers={"Connection": "close"}) as http:
            for body in chunk:
                response = http.post("/v1/models/iris/predict", json=body)
                assert response.status_code == 200, response.text
                versions.append(response.headers["x-model-version"])
        return versions

    with ThreadPoolExecutor(4) as pool:
        return [v for part in pool.map(post, [bodies[i::4] for i in range(4)]) for v in part]


def drift_when(server: ServerProcess, requests: int) -> dict[str, Any]:
    """GET .../monitoring/drift?window=10m until the workers' flushers have written
    ``requests`` requests, or the deadline (then the caller's assertions tell)."""
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        while True:
            response = http.get("/v1/models/iris/monitoring/drift?window=10m")
            assert response.status_code == 200, f"{response.text}\n{server.output()}"
            body: dict[str, Any] = response.json()
            if body["requests"] >= requests or time.monotonic() > deadline:
                return body
            time.sleep(0.2)


def requests_per_worker(home: Path) -> dict[str, int]:
    """Requests in each worker's minute windows, read straight from the database."""
    with contextlib.closing(sqlite3.connect(f"file:{home / 'modelhost.db'}?mode=ro",
                                            uri=True)) as db:
        rows = db.execute("SELECT worker, counts FROM profile_windows WHERE model = 'iris' "
                          "AND width_s = 60").fetchall()
    totals: dict[str, int] = {}
    for worker, counts in rows:
        totals[worker] = totals.get(worker, 0) + int(np.frombuffer(counts, "<f8")[0])
    return totals


def gauge_when(server: ServerProcess, name: str, labels: dict[str, str],
               value: float) -> float | None:
    """The gauge's value on /metrics once it is ``value``, or at the deadline."""
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + DEADLINE_S
    found = None
    while True:
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        found = next((sample.value for family in text_string_to_metric_families(text)
                      for sample in family.samples
                      if sample.name == name and sample.labels == labels), None)
        if found == value or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def drifted(body: dict[str, Any]) -> set[str]:
    return {f["name"] for f in body["features"] if f["drifted"]}


def test_drift_across_two_workers(server: ServerProcess, home: Path) -> None:
    X, _ = iris_frame()
    rng = np.random.default_rng(SEED)

    calm = X.iloc[rng.integers(0, len(X), size=REQUESTS)]
    assert set(post_rows(server.base_url, calm)) == {"1.0.1"}
    body = drift_when(server, REQUESTS)
    assert (body["model"], body["version"]) == ("iris", "1.0.1")
    assert (body["requests"], body["errors"], body["rows"]) == (REQUESTS, 0, REQUESTS)
    assert body["reference_rows"] == 150
    assert body["reference"]["source"] == "sklearn's iris"
    assert [f["name"] for f in body["features"]] == COLUMNS
    assert all(f["test"] == "ks" and f["rows"] == REQUESTS for f in body["features"])
    assert drifted(body) == set(), body["features"]
    assert body["dataset_drift"] is False and body["drift_share"] == 0.0
    # The predictions are profiled too, on the reference's classes (none unseen).
    assert (body["prediction"]["rows"], body["prediction"]["out_of_range"]) == (REQUESTS, 0)

    moved = X.iloc[rng.integers(0, len(X), size=REQUESTS)]
    moved = moved.assign(**{name: moved[name] + by for name, by in SHIFT.items()})
    assert set(post_rows(server.base_url, moved)) == {"1.0.1"}
    body = drift_when(server, 2 * REQUESTS)
    assert (body["requests"], body["errors"], body["rows"]) == (2 * REQUESTS, 0,
                                                               2 * REQUESTS)
    assert drifted(body) == set(SHIFT), body["features"]
    assert body["dataset_drift"] is True and body["drift_share"] == 0.5
    for feature in body["features"]:
        assert feature["drifted"] == (feature["p_value"] < feature["threshold"] == 0.05)

    # The evaluator's worker exports the same numbers over the last hour on /metrics,
    # whichever worker answers the scrape.
    labels = {"model": "iris", "version": "1.0.1"}
    assert gauge_when(server, "modelhost_drift_share", labels, 0.5) == 0.5
    assert gauge_when(server, "modelhost_dataset_drift", labels, 1.0) == 1.0
    assert gauge_when(server, "modelhost_profiled_rows", labels, 2 * REQUESTS) == 2 * REQUESTS

    # Both workers answered and wrote their own windows; the report is their sum.
    per_worker = requests_per_worker(home)
    assert len(per_worker) == 2 and min(per_worker.values()) > 0, per_worker
    assert sum(per_worker.values()) == 2 * REQUESTS


def test_degraded_feedback_fires_an_alert_that_rolls_back(server: ServerProcess,
                                                         home: Path) -> None:
    X, y = iris_frame()
    rng = np.random.default_rng(SEED + 1)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        rule = http.post("/v1/alerts", json={
            "model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8,
            "window": "10m", "min_samples": 100, "action": "rollback"})
        assert rule.status_code == 201, rule.text
        # Predictions with our request ids, then their ground truth, half of it wrong.
        rows = rng.integers(0, len(X), size=150)
        items = []
        for i, row in enumerate(rows):
            answer = http.post("/v1/models/iris/predict", headers={"X-Request-Id": f"e2e-{i}"},
                               json={"inputs": [X.iloc[int(row)].to_dict()]})
            assert answer.status_code == 200, answer.text
            truth = int(y.iloc[int(row)])
            items.append({"request_id": f"e2e-{i}", "label": truth if i % 2 else (truth + 1) % 3})
        sent = http.post("/v1/feedback", json={"items": items})
        assert sent.status_code == 202 and sent.json() == {"accepted": 150}, sent.text

        deadline = time.monotonic() + DEADLINE_S
        while True:
            events = http.get("/v1/alerts/events").json()["events"]
            if (events and events[0]["status"] != "pending") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(events) == 1, f"{events}\n{server.output()}"
        event = events[0]
        assert (event["rule_id"], event["version"], event["metric"]) == (
            rule.json()["id"], "1.0.1", "accuracy")
        assert event["value"] < 0.8 and event["samples"] >= 100
        assert (event["status"], event["outcome"]) == (
            "done", "rolled back iris from 1.0.1 to 1.0.0")

        # The workers switch to the restored version within the reload interval.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            answer = http.post("/v1/models/iris/predict",
                               json={"inputs": [X.iloc[0].to_dict()]})
            if answer.headers["x-model-version"] == "1.0.0" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.headers["x-model-version"] == "1.0.0"

    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    with Client(settings, migrate=False) as client:
        stages = {v.version: v.stage.value for v in client.registry.list_versions("iris")}
        assert stages == {"1.0.0": "production", "1.0.1": "archived"}
        rollback = client.audit.list(action="deployment.rollback")
        assert len(rollback) == 1 and rollback[0].actor == "alerts"
        (event,) = [e for e in client.rollouts.events("iris") if e.kind == "rollback"]
        assert (event.from_version, event.to_version, event.actor) == (
            "1.0.1", "1.0.0", "alerts")
        assert "accuracy of iris 1.0.1 was" in event.reason
