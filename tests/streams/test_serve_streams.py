"""Streams scored inside ``modelhost serve`` (``MODELHOST_STREAMS``): every worker
process consumes, beside the HTTP path, and /metrics shows the stream's events and lag;
a server stopping drains them; a broker that is down never stops the server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from modelhost import Client, Settings
from modelhost.cli import run
from modelhost.errors import InvalidInputError
from modelhost.streams.config import StreamConfig, parse_streams
from tests.fixtures_models import iris, iris_example, iris_model
from tests.serving.server import ServerProcess, free_port, server_env
from tests.streams.brokers import RedisBroker

pytestmark = pytest.mark.slow


def test_streams_are_parsed_with_clear_errors() -> None:
    assert parse_streams('[{"model": "m", "source": "redis://h/a", "sink": "redis://h/b",'
                         ' "batch": 32, "claim_idle_s": 5}]') == [
        StreamConfig("m", "redis://h/a", "redis://h/b", batch=32, claim_idle_s=5)]
    for text, words in [
            ("{", "not valid JSON"), ('{"model": "m"}', "list"), ("[1]", "object"),
            ('[{"model": "m", "source": "s"}]', "needs sink"),
            ('[{"model": "m", "source": "s", "sink": "t", "size": 1}]', "unknown option"),
            ('[{"model": "m", "source": "s", "sink": "t", "batch": "9"}]', "batch must be int"),
            ('[{"model": "m", "source": "s", "sink": "t", "batch": true}]', "batch must be"),
            ('[{"model": "m", "source": "s", "sink": "t", "batch": 0}]', "from 1")]:
        with pytest.raises(InvalidInputError, match=words):
            parse_streams(text)


def test_a_serve_with_streams_scores_them_in_every_worker_and_drains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    with Client(Settings(home=home)) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
    broker = RedisBroker()
    dead_port = free_port()  # nobody listens: this stream's consumer keeps retrying
    streams = json.dumps([
        {"model": "iris", "source": broker.uri("in"), "sink": broker.uri("out"),
         "batch": 32, "claim_idle_s": 5},
        {"model": "iris", "source": f"redis://127.0.0.1:{dead_port}/nowhere",
         "sink": f"redis://127.0.0.1:{dead_port}/nothing"}])
    logs = tmp_path / "logs"
    logs.mkdir()
    server = ServerProcess(args=["--workers", "2"], log_dir=logs,
                           env=server_env(home, MODELHOST_STREAMS=streams))
    try:
        X, _ = iris()
        rows = X.sample(600, replace=True, random_state=5).to_dict(orient="records")
        ids = broker.produce([(json.dumps(r).encode(), f"k{i % 9}")
                              for i, r in enumerate(rows)])
        server.start()
        deadline = time.monotonic() + 60
        while broker.count() < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {r["source_id"] for r in broker.results()} == set(ids), server.output()
        # HTTP answers all along (the down broker's consumer retries off the path).
        answer = httpx.post(f"{server.base_url}/v1/models/iris/predict",
                            json={"inputs": rows[:2]}, timeout=10)
        assert answer.status_code == 200
        deadline = time.monotonic() + 20
        metrics = ""
        while time.monotonic() < deadline:  # lag is reported every 5 s per worker
            metrics = httpx.get(f"{server.base_url}/metrics", timeout=10).text
            if "modelhost_stream_lag{" in metrics:
                break
            time.sleep(0.5)
        scored = [line for line in metrics.splitlines()
                  if line.startswith("modelhost_stream_events_total{")
                  and 'outcome="scored"' in line]
        # At least once (docs/streams.md): a batch that a worker still holds after
        # claim_idle_s (5 s here; a slow machine's start) is taken over by the other
        # and scored again (seen once: 632). Every event reached the sink (above).
        assert scored and sum(float(line.rsplit(" ", 1)[1]) for line in scored) >= 600
        assert f'stream="{broker.uri("in")}"' in scored[0]
        assert any(line.startswith("modelhost_requests_total{") and 'protocol="stream"'
                   in line for line in metrics.splitlines())
        assert "modelhost_stream_lag{" in metrics
        # Each worker process is a consumer of the group.
        consumers = broker.consumers()
        assert len(consumers) == 2 and all("-iris-" in c for c in consumers), consumers
    finally:
        if server.running:
            assert server.terminate() == 0, server.output()
        assert broker.pending() == 0
        broker.close()
    # A mistake in MODELHOST_STREAMS stops serve before it starts, naming it.
    monkeypatch.setenv("MODELHOST_HOME", str(home))
    monkeypatch.setenv("MODELHOST_STREAMS", '[{"model": "iris"}]')
    assert run(["serve", "--port", str(free_port())]) == 1
    assert "MODELHOST_STREAMS[0] needs source, sink" in capsys.readouterr().err
