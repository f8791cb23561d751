"""End to end: a real ``modelhost serve`` process on a loopback port, driven over HTTP by
httpx and by the real third-party Triton client.

Starting a server costs seconds, so the servers are shared by the tests of this module:

* ``main``: ``--workers 2`` on SQLite with iris 1.0.0 (production) and 1.0.1, and a slow
  model. Tests compare against the version the server says it served, so they do not
  depend on the hot-reload test promoting 1.0.1. The graceful-shutdown test stops it
  (and it is started again should a later test need it).
* ``mlflow``: ``--model iris`` (one worker), for the MLflow scoring protocol.
* a PostgreSQL-backed server of its own for the database-going-away test.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from tests.fixtures_models import iris_example, iris_model
from tests.serving.server import ServerProcess, server_env

from modelhost import Client, Settings

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# The in-process twin of each registered iris version.
MODELS: dict[str, Callable[[], Any]] = {"1.0.0": lambda: iris_model(),
                                        "1.0.1": lambda: iris_model(C=0.01)}
JSON = {"content-type": "application/json"}
# A server stopped by SIGTERM drains and exits 0, with one worker or several.
SINGLE_WORKER_EXITS = (0,)


def _settings(home: Path, db_url: str | None = None) -> Settings:
    return Settings(home=home, db_url=db_url or f"sqlite:///{home / 'modelhost.db'}",
                    artifacts=str(home / "artifacts"))


def _register_iris(settings: Settings) -> None:
    with Client(settings) as client:
        registry = client.registry
        registry.register(iris_model(), name="iris", input_example=iris_example())
        registry.register(iris_model(C=0.01), name="iris", input_example=iris_example())
        registry.transition("iris", "1.0.0", "staging")
        registry.transition("iris", "1.0.0", "production")


def _log_dir(home: Path) -> Path:
    """The server's working folder and logs, next to its home."""
    path = home.parent / f"{home.name}-logs"
    path.mkdir(exist_ok=True)
    return path


def _records(rows: int) -> list[dict[str, float]]:
    return iris_example(rows=rows).to_dict(orient="records")  # type: ignore[return-value]


def _error(response: httpx.Response) -> dict[str, Any]:
    """The §3.6 error body, checked for shape and for leaks."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "request_id"} <= set(body["error"]), body
    for leak in ("Traceback", "site-packages", "/work/", "sqlite:///"):
        assert leak not in response.text
    assert response.headers["x-request-id"] == body["error"]["request_id"]
    return body["error"]  # type: ignore[no-any-return]


# --- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("e2e") / "template"
    _register_iris(_settings(home))
    return home


@pytest.fixture(scope="module")
def main_home(iris_template: Path) -> Path:
    home = iris_template.parent / "main"
    shutil.copytree(iris_template, home)
    with Client(_settings(home)) as client:
        registry = client.registry
        signature = registry.get_version("iris", "1.0.0").signature
        slow = registry.register("tests.serving.server:SlowModel", name="slow",
                                 flavor="python", signature=signature)
        registry.transition("slow", slow.version, "staging")
        registry.transition("slow", slow.version, "production")
    return home


@pytest.fixture(scope="module")
def main_process(main_home: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(args=["--workers", "2"], env=server_env(main_home),
                           log_dir=_log_dir(main_home))
    server.launch()
    try:
        yield server
    finally:
        if server.running:
            code = server.terminate()
            assert code == 0, f"exit status {code}\n{server.output()}"


@pytest.fixture
def main(main_process: ServerProcess) -> ServerProcess:
    main_process.ensure_running()
    return main_process


@pytest.fixture(scope="module")
def mlflow_process(iris_template: Path) -> Iterator[ServerProcess]:
    home = iris_template.parent / "mlflow"
    shutil.copytree(iris_template, home)
    server = ServerProcess(args=["--model", "iris"], env=server_env(home),
                           log_dir=_log_dir(home))
    try:
        yield server
    finally:
        if server.running:
            code = server.terminate()
            assert code in SINGLE_WORKER_EXITS, f"exit status {code}\n{server.output()}"


@pytest.fixture
def mlflow(mlflow_process: ServerProcess) -> ServerProcess:
    mlflow_process.ensure_running()
    return mlflow_process


# --- 1. our v1 API over real HTTP -----------------------------------------------------------


def test_v1_predict_over_http(main: ServerProcess) -> None:
    X = iris_example(rows=7)
    with httpx.Client(base_url=main.base_url, timeout=10) as http:
        response = http.post("/v1/models/iris/predict", json={"inputs": _records(7)},
                             headers={"X-Request-Id": "e2e-v1.1"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"model", "version", "request_id", "predictions",
                             "probabilities"}
        version = body["version"]
        assert body["model"] == "iris"
        assert response.headers["x-model-version"] == version
        assert response.headers["content-type"] == "application/json"
        model = MODELS[version]()
        assert body["predictions"] == model.predict(X).tolist()
        assert np.allclose(body["probabilities"], model.predict_proba(X), rtol=0, atol=1e-12)
        assert body["request_id"] == response.headers["x-request-id"] == "e2e-v1.1"

        # Columns, and a version pinned by route and by header.
        columns = X.to_dict(orient="list")
        for path, headers in (("/v1/models/iris/versions/1.0.1/predict", {}),
                              ("/v1/models/iris/predict", {"X-Model-Version": "1.0.1"})):
            pinned = http.post(path, json={"inputs": columns}, headers=headers)
            assert pinned.status_code == 200, pinned.text
            assert pinned.headers["x-model-version"] == pinned.json()["version"] == "1.0.1"
            assert pinned.json()["predictions"] == iris_model(C=0.01).predict(X).tolist()

        # Without X-Request-Id the server makes one up, the same in header and body.
        fresh = http.post("/v1/models/iris/versions/1.0.0/predict",
                          json={"inputs": _records(1)})
        assert fresh.status_code == 200
        assert len(fresh.headers["x-request-id"]) >= 16
        assert fresh.json()["request_id"] == fresh.headers["x-request-id"]

        missing = http.post("/v1/models/nope/predict", json={"inputs": _records(1)},
                            headers={"X-Request-Id": "e2e-404"})
        assert missing.status_code == 404
        error = _error(missing)
        assert error["code"] == "not_found"
        assert error["request_id"] == "e2e-404"
        assert "nope" in error["message"]
        no_version = http.post("/v1/models/iris/versions/9.9.9/predict",
                               json={"inputs": _records(1)})
        assert no_version.status_code == 404
        assert _error(no_version)["code"] == "not_found"

        mistyped = {**_records(1)[0], "sepal_length": "long"}
        invalid = http.post("/v1/models/iris/predict", json={"inputs": [mistyped]},
                            headers={"X-Request-Id": "e2e-422"})
        assert invalid.status_code == 422, invalid.text
        error = _error(invalid)
        assert error["code"] == "invalid_input"
        assert error["request_id"] == "e2e-422"
        assert "column 'sepal_length': expected double, got string at row 0" in \
            error["message"]
        partial = http.post("/v1/models/iris/predict",
                            json={"inputs": [{"sepal_length": 1.0}]})
        assert partial.status_code == 422
        assert "required column is missing" in _error(partial)["message"]

        broken = http.post("/v1/models/iris/predict", content=b"{not json", headers=JSON)
        assert broken.status_code == 400
        assert "not valid JSON" in _error(broken)["message"]
        wrong_type = http.post("/v1/models/iris/predict", content=b"a=1",
                               headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 415
        _error(wrong_type)

        # The MLflow routes on a multi-model server: per model only.
        per_model = http.post("/v1/models/iris/invocations",
                              json={"dataframe_records": _records(3)})
        assert per_model.status_code == 200, per_model.text
        served = MODELS[per_model.headers["x-model-version"]]()
        assert per_model.json() == {"predictions": served.predict(X.head(3)).tolist()}
        assert http.post("/invocations", json={"dataframe_records": _records(1)}
                         ).status_code == 404


# --- 2. Open Inference Protocol v2 with the real Triton client ------------------------------


def test_open_inference_v2_with_tritonclient(main: ServerProcess) -> None:
    from tritonclient.http import (
        InferenceServerClient,
        InferenceServerException,
        InferInput,
        InferRequestedOutput,
    )

    n = 6
    X = iris_example(rows=n)
    values = X.to_numpy(dtype=np.float64)
    client = InferenceServerClient(url=f"127.0.0.1:{main.port}", network_timeout=30.0)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert client.is_model_ready("iris", "1.0.1")
        assert not client.is_model_ready("nope")

        meta = client.get_model_metadata("iris")
        assert meta["name"] == "iris"
        assert set(meta["versions"]) == {"1.0.0", "1.0.1"}
        assert [i["name"] for i in meta["inputs"]] == COLUMNS
        assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
        # Metadata names the outputs infer answers (never "0"), with their datatypes.
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
            ("predict", "INT64"), ("predict_proba", "FP64")]
        assert client.get_model_metadata("iris", "1.0.1")["name"] == "iris"
        with pytest.raises(InferenceServerException, match="nope"):
            client.get_model_metadata("nope")

        # The client's default is Triton's binary tensor extension; False is plain JSON.
        def options(binary: bool) -> dict[str, bool]:
            return {} if binary else {"binary_data": False}

        def per_column(binary: bool) -> list[Any]:
            inputs = []
            for i, column in enumerate(COLUMNS):
                tensor = InferInput(column, [n, 1], "FP64")
                tensor.set_data_from_numpy(values[:, i:i + 1].copy(), **options(binary))
                inputs.append(tensor)
            return inputs

        def one_matrix(binary: bool) -> list[Any]:
            tensor = InferInput("input-0", [n, 4], "FP64")
            tensor.set_data_from_numpy(values, **options(binary))
            return [tensor]

        for binary in (True, False):
            for make_inputs in (per_column, one_matrix):
                for version in ("1.0.0", "1.0.1"):
                    outputs = [InferRequestedOutput(o["name"], **options(binary))
                               for o in meta["outputs"]]
                    result = client.infer("iris", make_inputs(binary), outputs=outputs,
                                          model_version=version, request_id="e2e-v2")
                    output = result.get_output("predict")
                    assert output is not None
                    sent_binary = "binary_data_size" in output.get("parameters", {})
                    assert sent_binary == binary, output
                    response = result.get_response()
                    assert [(o["name"], o["datatype"]) for o in response["outputs"]] == [
                        (o["name"], o["datatype"]) for o in meta["outputs"]]
                    assert response["model_name"] == "iris"
                    assert response["model_version"] == version
                    assert response["id"] == "e2e-v2"
                    model = MODELS[version]()
                    predictions = result.as_numpy("predict")
                    assert predictions is not None
                    assert predictions.tolist() == model.predict(X).tolist(), (
                        binary, make_inputs.__name__, version)
                    probabilities = result.as_numpy("predict_proba")
                    assert probabilities is not None
                    assert probabilities.shape == (n, 3)
                    assert np.allclose(probabilities, model.predict_proba(X), rtol=0,
                                       atol=1e-12)

        # Routed (no version): the answer names the version that served it.
        routed = client.infer("iris", per_column(True))
        served = routed.get_response()["model_version"]
        assert routed.as_numpy("predict").tolist() == MODELS[served]().predict(X).tolist()

        with pytest.raises(InferenceServerException, match="nope"):
            client.infer("nope", per_column(True))
    finally:
        client.close()

    # The versioned route, in the protocol's plain JSON.
    with httpx.Client(base_url=main.base_url, timeout=10) as http:
        request = {"id": "e2e-json", "inputs": [
            {"name": "input-0", "shape": [n, 4], "datatype": "FP64",
             "data": values.reshape(-1).tolist()}]}
        response = http.post("/v2/models/iris/versions/1.0.1/infer", json=request)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_name"] == "iris"
        assert body["model_version"] == "1.0.1"
        assert body["id"] == "e2e-json"
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["predict"]["data"] == iris_model(C=0.01).predict(X).tolist()
        assert outputs["predict"]["shape"] == [n]
        unknown = http.post("/v2/models/iris/versions/9.9.9/infer", json=request)
        assert unknown.status_code == 404
        assert set(unknown.json()) == {"error"}
        assert isinstance(unknown.json()["error"], str)
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2").json()["name"]


# --- 3. MLflow scoring protocol on `serve --model iris` ------------------------------------


def test_mlflow_scoring_protocol(mlflow: ServerProcess) -> None:
    X = iris_example(rows=4)
    rows = X.to_numpy().tolist()
    bodies: dict[str, Any] = {
        "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": rows}},
        "dataframe_split with index": {"dataframe_split": {
            "index": [0, 1, 2, 3], "columns": COLUMNS, "data": rows}},
        "dataframe_records": {"dataframe_records": _records(4)},
        "instances": {"instances": rows},
        "inputs": {"inputs": X.to_dict(orient="list")},
    }
    with httpx.Client(base_url=mlflow.base_url, timeout=10) as http:
        for label, body in bodies.items():
            response = http.post("/invocations", json=body)
            assert response.status_code == 200, (label, response.text)
            version = response.headers["x-model-version"]
            assert response.json() == {"predictions": MODELS[version]().predict(X).tolist()}, \
                label
        csv = http.post("/invocations", content=X.to_csv(index=False).encode(),
                        headers={"content-type": "text/csv"})
        assert csv.status_code == 200, csv.text
        expected = MODELS[csv.headers["x-model-version"]]().predict(X).tolist()
        assert csv.json() == {"predictions": expected}
        utf8 = http.post("/invocations", json=bodies["dataframe_split"],
                         headers={"content-type": "application/json; charset=utf-8"})
        assert utf8.status_code == 200, utf8.text

        for path in ("/ping", "/health"):
            assert http.get(path).status_code == 200
        version_text = http.get("/version")
        assert version_text.status_code == 200
        assert version_text.text.strip() == metadata.version("modelhost")

        unsupported = http.post("/invocations", content=b"hello",
                                headers={"content-type": "text/plain"})
        assert unsupported.status_code == 415, unsupported.text
        assert set(unsupported.json()) == {"error_code", "message"}
        bad_json = http.post("/invocations", content=b"{not json", headers=JSON)
        assert bad_json.status_code == 400, bad_json.text
        assert set(bad_json.json()) == {"error_code", "message"}
        assert isinstance(bad_json.json()["error_code"], str)
        two_formats = http.post("/invocations", json={**bodies["instances"],
                                                      **bodies["dataframe_records"]})
        assert two_formats.status_code == 400
        assert set(two_formats.json()) == {"error_code", "message"}

        # Only the one model is served here.
        assert http.post("/v1/models/iris/invocations", json=bodies["instances"]
                         ).status_code == 200
        other = http.post("/v1/models/other/predict", json={"inputs": _records(1)})
        assert other.status_code == 404


def test_single_worker_server_exits_zero_on_sigterm(mlflow: ServerProcess) -> None:
    with httpx.Client(base_url=mlflow.base_url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
    code = mlflow.terminate()
    assert "Application shutdown complete" in mlflow.output()
    assert code == 0


# --- 5. metrics aggregated over the workers ------------------------------------------------


def _sample_sum(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name
               and all(sample.labels.get(k) == v for k, v in labels.items()))


def test_bench_command_loads_a_real_server(main: ServerProcess,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from modelhost.cli import run

    code = run(["bench", "iris", "--url", main.base_url, "--concurrency", "4",
                "--duration", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["requests"] == result["ok"] > 0
    assert result["errors"] == {}
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    code = run(["bench", "nope", "--url", main.base_url, "--duration", "1"])
    assert code == 1
    assert "404" in capsys.readouterr().err


def test_metrics_are_summed_over_workers(main: ServerProcess) -> None:
    n = 40
    labels = {"model": "iris", "protocol": "v1", "status": "200"}
    # A new connection per request, so that both workers answer some of them.
    close = {"Connection": "close"}
    with httpx.Client(base_url=main.base_url, timeout=10, headers=close) as http:
        version = http.post("/v1/models/iris/predict", json={"inputs": _records(1)}
                            ).headers["x-model-version"]
        baseline_text = http.get("/metrics").text
        requests = labels | {"version": version}
        before = _sample_sum(baseline_text, "modelhost_requests_total", **requests)
        latency_before = _sample_sum(baseline_text, "modelhost_request_duration_seconds_count",
                                     model="iris", protocol="v1", version=version)
        assert before >= 1
        for _ in range(n):
            response = http.post("/v1/models/iris/predict", json={"inputs": _records(2)})
            assert response.status_code == 200
            assert response.headers["x-model-version"] == version
        # A counter is increased right after its response is sent: allow that moment.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = http.get("/metrics").text
            if _sample_sum(text, "modelhost_requests_total", **requests) >= before + n:
                break
            time.sleep(0.05)
        for _ in range(8):  # whichever worker answers, it reports every worker's counts
            response = http.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            text = response.text
            assert _sample_sum(text, "modelhost_requests_total", **requests) == before + n
            assert _sample_sum(text, "modelhost_request_duration_seconds_count",
                               model="iris", protocol="v1", version=version
                               ) == latency_before + n
            assert _sample_sum(text, "modelhost_model_load_seconds_count",
                               model="iris", version=version) >= 2  # once per worker


# --- 8. the Nagle guard --------------------------------------------------------------------


def test_sequential_latency_on_one_keepalive_connection(main: ServerProcess) -> None:
    """Not a performance target: a lost TCP_NODELAY on the server adds ~40 ms to every
    response (Nagle's algorithm meets delayed ACKs). The client disables Nagle itself so
    that only the server is measured."""
    transport = httpx.HTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    body = orjson.dumps({"inputs": _records(1)})
    with httpx.Client(base_url=main.base_url, timeout=10, transport=transport) as http:
        for _ in range(20):  # warm up
            assert http.post("/v1/models/iris/predict", content=body, headers=JSON
                             ).status_code == 200
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            response = http.post("/v1/models/iris/predict", content=body, headers=JSON)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
    median = statistics.median(timings)
    assert median < 0.020, f"median {median * 1000:.1f} ms over one keep-alive connection"


def test_pipelined_requests_are_answered_in_order_and_a_close_sends_the_last_answer(
        main: ServerProcess) -> None:
    """The server joins each answer's writes (serving.transport): three requests sent at
    once on one connection, the last asking to close it, get three whole answers in
    order, and the close comes after the last one."""
    body = orjson.dumps({"inputs": _records(1)})
    request = (b"POST /v1/models/iris/predict HTTP/1.1\r\nHost: test\r\n"
               b"Content-Type: application/json\r\nX-Request-Id: %s\r\n%s"
               b"Content-Length: %d\r\n\r\n%s")
    pipelined = b"".join(
        request % (f"pipe-{i}".encode(), b"Connection: close\r\n" if i == 2 else b"",
                   len(body), body) for i in range(3))
    with socket.create_connection(("127.0.0.1", main.port), timeout=10) as sock:
        sock.sendall(pipelined)
        received = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 3, received
    for i, answer in enumerate(answers):
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"200 OK"), answer
        assert f"x-request-id: pipe-{i}".encode() in head.lower()
        assert orjson.loads(payload)["request_id"] == f"pipe-{i}"


# --- 4. hot reload under load --------------------------------------------------------------


def _load(base_url: str, path: str, body: bytes, stop: threading.Event, results: list[Any],
          *, max_seconds: float, headers: dict[str, str] | None = None) -> None:
    """Post ``body`` in a loop on one keep-alive connection until ``stop`` (or
    ``max_seconds``); append (time, status or None, version or error) to ``results``."""
    deadline = time.monotonic() + max_seconds
    with httpx.Client(base_url=base_url, timeout=10) as http:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response = http.post(path, content=body, headers={**JSON, **(headers or {})})
            except httpx.HTTPError as exc:
                results.append((time.monotonic(), None, type(exc).__name__))
                time.sleep(0.02)
                continue
            results.append((time.monotonic(), response.status_code,
                            response.headers.get("x-model-version")))


def test_hot_reload_under_load_fails_no_request(main: ServerProcess, main_home: Path) -> None:
    with Client(_settings(main_home)) as client:
        assert client.registry.get_version("iris", "@production").version == "1.0.0", \
            "this test promotes 1.0.1 and needs 1.0.0 in production first"
        body = orjson.dumps({"inputs": _records(3)})
        stop = threading.Event()
        per_client: list[list[Any]] = [[] for _ in range(8)]
        threads = [threading.Thread(target=_load, args=(main.base_url, "/v1/models/iris/predict",
                                                        body, stop, results),
                                    kwargs={"max_seconds": 30}, daemon=True)
                   for results in per_client]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        promoted_at = time.monotonic()
        client.registry.transition("iris", "1.0.1", "staging")
        client.registry.transition("iris", "1.0.1", "production")
        # Keep the load on until every client has seen 1.0.1 for a while (bounded).
        deadline = promoted_at + 15
        while time.monotonic() < deadline:
            recent = [r[-1] for r in per_client if r]
            if len(recent) == len(per_client) and all(
                    v == "1.0.1" and t > promoted_at + 3 for t, _, v in recent):
                break
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in threads)

    everything = sorted((r for results in per_client for r in results), key=lambda r: r[0])
    failures = [r for r in everything if r[1] != 200]
    assert not failures, f"{len(failures)} of {len(everything)} failed: {failures[:10]}"
    before = {v for t, _, v in everything if t < promoted_at}
    assert before == {"1.0.0"}
    for results in per_client:
        versions = [v for _, _, v in results]
        assert versions[-1] == "1.0.1"
        first_new = versions.index("1.0.1")
        # One connection stays with one worker: once switched, never back.
        assert set(versions[first_new:]) == {"1.0.1"}, versions
    first_new_at = next(t for t, _, v in everything if v == "1.0.1")
    last_old_at = max(t for t, _, v in everything if v == "1.0.0")
    assert first_new_at - promoted_at < 5.0
    # Workers reload independently; both have switched within a few seconds.
    assert last_old_at - promoted_at < 5.0
    assert {v for t, _, v in everything if t > last_old_at} == {"1.0.1"}


# --- 7. the database going away ------------------------------------------------------------


@pytest.mark.postgres
def test_loaded_models_keep_serving_when_the_database_goes_away(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text
    from tests.services import require_postgres

    admin_url = require_postgres()
    name = f"modelhost_e2e_{os.getpid()}"
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        home = tmp_path / "home"
        _register_iris(_settings(home, db_url=url))
        server = ServerProcess(args=[], env=server_env(home, MODELHOST_DB_URL=url),
                               log_dir=_log_dir(home))
        try:
            server.start()
            X = iris_example(rows=3)
            with httpx.Client(base_url=server.base_url, timeout=15) as http:
                assert http.post("/v1/models/iris/predict", json={"inputs": _records(3)}
                                 ).status_code == 200
                listed = http.get("/v1/models")
                assert listed.status_code == 200
                assert [m["name"] for m in listed.json()] == ["iris"]

                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))

                deadline = time.monotonic() + 15
                while http.get("/readyz").status_code == 200:
                    assert time.monotonic() < deadline, "/readyz stayed 200 without a database"
                    time.sleep(0.1)
                ready = http.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["database"] is False

                # Over several reload intervals, the loaded version keeps answering.
                for _ in range(10):
                    for headers in ({}, {"X-Model-Version": "1.0.0"}):
                        response = http.post("/v1/models/iris/predict",
                                             json={"inputs": _records(3)}, headers=headers)
                        assert response.status_code == 200, response.text
                        assert response.json()["predictions"] == \
                            iris_model().predict(X).tolist()
                    time.sleep(0.15)

                for path in ("/v1/models", "/v1/models/iris"):
                    down = http.get(path, headers={"X-Request-Id": "e2e-db"})
                    assert down.status_code == 503, down.text
                    error = _error(down)
                    assert error["request_id"] == "e2e-db"
                    assert int(down.headers["retry-after"]) >= 1
                    assert name not in down.text and "postgres" not in down.text.lower()
            code = server.terminate()
            assert code in SINGLE_WORKER_EXITS, f"exit status {code}\n{server.output()}"
        finally:
            if server.running:
                server.kill()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- 6. graceful shutdown (stops the main server: keep it last) ----------------------------


def test_sigterm_finishes_accepted_requests(main: ServerProcess) -> None:
    slow: dict[str, Any] = {}

    def call_slow() -> None:
        with httpx.Client(base_url=main.base_url, timeout=20) as http:
            try:
                slow["response"] = http.post("/v1/models/slow/predict",
                                             json={"inputs": _records(1)})
            except httpx.HTTPError as exc:
                slow["error"] = exc

    body = orjson.dumps({"inputs": _records(2)})
    stop = threading.Event()
    per_client: list[list[Any]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_load, args=(main.base_url, "/v1/models/iris/predict",
                                                    body, stop, results),
                                kwargs={"max_seconds": 40}, daemon=True)
               for results in per_client]
    slow_thread = threading.Thread(target=call_slow, daemon=True)
    try:
        for thread in threads:
            thread.start()
        slow_thread.start()
        # Wait until the slow request is inside the model (queue depth counts it).
        with httpx.Client(base_url=main.base_url, timeout=5) as http:
            deadline = time.monotonic() + 10
            while _sample_sum(http.get("/metrics").text, "modelhost_queue_depth_rows",
                              model="slow") < 1:
                assert time.monotonic() < deadline, "the slow request never started"
                time.sleep(0.05)
        stopping_at = time.monotonic()
        code = main.terminate()
        stopped_at = time.monotonic()
    finally:
        stop.set()
        slow_thread.join(timeout=25)
        for thread in threads:
            thread.join(timeout=15)
    assert code == 0, f"exit status {code}\n{main.output()}"
    assert not slow_thread.is_alive() and not any(t.is_alive() for t in threads)

    assert "error" not in slow, repr(slow.get("error"))
    response = slow["response"]
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [0]
    assert stopped_at - stopping_at < 20

    everything = [r for results in per_client for r in results]
    statuses = {status for _, status, _ in everything if status is not None}
    assert statuses == {200}, sorted(statuses)
    # Refused, or closed by the server between requests: never an error response.
    allowed = {"ConnectError", "RemoteProtocolError", "ReadError", "WriteError"}
    errors = {v for _, status, v in everything if status is None}
    assert errors <= allowed, errors
    assert any(t < stopping_at for t, _, _ in everything)
