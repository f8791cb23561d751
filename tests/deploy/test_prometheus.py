"""The shipped Prometheus rules and Grafana dashboard, against the real tools: `promtool
check rules`, then a real Prometheus (Debian's package) scraping a real `modelhost serve`
(2 workers) under traffic, evaluating every rule without an error and answering every
dashboard panel's query with data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelhost import Client, Settings
from tests.fixtures_models import iris_example, iris_model
from tests.serving.server import ServerProcess, free_port, server_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "modelhost-dashboard.json"
DEADLINE_S = 90.0


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: 'make system-deps' installs Debian's prometheus")
        pytest.skip(f"{name} is not installed; 'make system-deps' installs it")
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([_tool("promtool"), "check", "rules", str(RULES)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 18 rules found" in done.stdout


def test_every_alert_fires_when_it_should_and_not_before() -> None:
    """`promtool test rules` on tests/deploy/rules_test.yml: series given minute by
    minute, the alerts expected at each time, with their labels and summaries."""
    tests = Path(__file__).with_name("rules_test.yml")
    done = subprocess.run([_tool("promtool"), "test", "rules", str(tests)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every panel, with the model variable at 'all'."""
    document = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in document["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queries.append((panel["title"], target["expr"].replace("$model", ".*")))
    return queries


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("prometheus") / "home"
    with Client(Settings(home=home)) as client:
        mv = client.registry.register(iris_model(), name="iris", input_example=iris_example(),
                                      reference_data=iris_example(rows=20),
                                      metrics={"accuracy": 0.97})
        client.registry.set_tags("iris", {"serving.cache": "true"})  # cache metrics too
        client.transition_stage("iris", mv.version, "staging")
        client.transition_stage("iris", mv.version, "production")
    logs = home.parent / "logs"
    logs.mkdir()
    # Alerts evaluated (and drift and quality measured) every second, not every 30.
    process = ServerProcess(args=["--workers", "2"], log_dir=logs,
                            env=server_env(home, MODELHOST_ALERTS_INTERVAL_S="1",
                                           MODELHOST_MONITOR_FLUSH_S="0.5"))
    process.start()
    try:
        yield process
    finally:
        if process.running:
            assert process.terminate() == 0, process.output()


@pytest.fixture(scope="module")
def prometheus(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus-run")
    # The shipped rules as they are, evaluated every second instead of every 15.
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    (folder / "rules.yml").write_text(yaml.safe_dump(rules))
    (folder / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": "modelhost",
                            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}],
    }))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [_tool("prometheus"), f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, \
                (folder / "prometheus.log").read_text()[-3000:]
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def traffic(server: ServerProcess, seconds: float) -> None:
    """Predictions (the same rows again and again: cache hits too), a bad request, and
    the ground truth of each answered row (live accuracy)."""
    frame = iris_example(rows=20)
    rows = frame.to_dict(orient="records")
    truth = iris_model().predict(frame)  # labels that agree with the model: accuracy 1
    end = time.monotonic() + seconds
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        while time.monotonic() < end:
            labels = []
            for row, label in zip(rows, truth, strict=True):
                answer = http.post("/v1/models/iris/predict", json={"inputs": [row]})
                assert answer.status_code == 200
                labels.append({"request_id": answer.headers["x-request-id"],
                               "label": int(label)})
            bad = http.post("/v1/models/iris/predict", json={"inputs": [{"nope": 1}]})
            assert bad.status_code == 422
            assert http.post("/v1/feedback", json={"items": labels}).status_code == 202


def test_every_rule_evaluates_and_every_panel_has_data(server: ServerProcess,
                                                       prometheus: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    queries = dashboard_queries()
    missing: list[str] = []
    while True:
        traffic(server, 2.0)
        missing = [f"{title}: {expr}" for title, expr in queries if not query(prometheus, expr)]
        if not missing or time.monotonic() > deadline:
            break
    assert not missing, missing

    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 18
    for rule in rules:
        assert rule["health"] == "ok", rule
        if rule["type"] == "recording":
            assert query(prometheus, rule["name"]), rule["name"]
        else:  # an alert's expression runs; none fires for a healthy server
            query(prometheus, rule["query"])
            assert rule["state"] == "inactive", rule
    assert [s["value"][1] for s in query(prometheus, 'up{job="modelhost"}')] == ["1"]
    p99 = query(prometheus, "modelhost:request_duration_seconds:p99_5m")
    assert all(0 < float(s["value"][1]) < 1 for s in p99), p99
    ratio = query(prometheus, "modelhost:errors:ratio_rate5m")
    assert [float(s["value"][1]) for s in ratio] == [0.0]  # 422s are no server errors
    # The inputs are the reference rows: no drift; the labels agree: accuracy 1.
    drift = query(prometheus, "modelhost:drift_share:max")
    assert [(s["metric"]["model"], float(s["value"][1])) for s in drift] == [("iris", 0.0)]
    accuracy = query(prometheus, 'modelhost:model_quality:max{metric="accuracy"}')
    assert [float(s["value"][1]) for s in accuracy] == [1.0]
