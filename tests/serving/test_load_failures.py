"""A version that fails to load: named in /readyz with a one-line reason and the time to
its retry, the server ready with the others, one log line without a traceback, and
retries with exponential backoff until the cause is gone (on an injected clock)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serving.conftest import records
from tests.serving.startup_models import BROKEN_MARKER_ENV

from modelhost import Client
from modelhost.serving import PoolOptions, ServerOptions, create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _register_broken(client: Client) -> None:
    """A python model with iris' signature, in production, that builds for now."""
    registry = client.registry
    registry.register("tests.serving.startup_models:BrokenModel", name="broken",
                      flavor="python", signature=registry.get_version("iris", "1.0.0").signature)
    registry.transition("broken", "1.0.0", "staging")
    registry.transition("broken", "1.0.0", "production")


def _failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "modelhost.serving.pool" and "failed to load" in r.getMessage()]


@pytest.mark.anyio
async def test_failed_load_is_reported_and_retried_with_backoff(
        iris_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    registry = iris_client.registry
    _register_broken(iris_client)
    marker = tmp_path / "broken"
    marker.touch()  # from now on BrokenModel fails to build
    monkeypatch.setenv(BROKEN_MARKER_ENV, str(marker))
    caplog.set_level(logging.INFO, logger="modelhost")
    clock = Clock()
    app = create_app(registry, options=ServerOptions(pool=PoolOptions(reload_interval_s=0.05)),
                     clock=clock)
    pool = app.server.pool

    def attempts() -> int:
        return len(_failure_lines(caplog))

    async with app.running(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        ready = await http.get("/readyz")
        body: dict[str, Any] = ready.json()
        # Ready: iris serves, and the failed version does not hold it back.
        assert ready.status_code == 200, body
        assert body["ready"] is True and body["database"] is True
        assert body["serving"] == {"iris": "1.0.0"} and body["loading"] == {}
        failed = body["failed"]["broken"]
        assert failed["version"] == "1.0.0"
        assert "the feature store is unreachable" in failed["reason"]
        assert "\n" not in failed["reason"] and "Traceback" not in failed["reason"]
        assert str(tmp_path) not in ready.text
        assert failed["attempts"] == 1 and failed["retry_in_s"] == 1.0
        # One warning line with the reason and the retry; no traceback without debug.
        [line] = _failure_lines(caplog)
        assert line.levelno == logging.WARNING and line.exc_info is None
        assert line.getMessage().startswith("broken 1.0.0 failed to load (attempt 1): ")
        assert "the feature store is unreachable" in line.getMessage()
        assert line.getMessage().endswith("; retrying in 1 s")
        assert "Traceback" not in caplog.text

        # Prometheus sees it: the version's load-failed gauge is 1 (0 for iris).
        metrics = (await http.get("/metrics")).text
        assert 'modelhost_model_load_failed{model="broken",version="1.0.0"} 1.0' in metrics
        assert 'modelhost_model_load_failed{model="iris",version="1.0.0"} 0.0' in metrics

        # A request for it is answered at once, without another attempt.
        response = await http.post("/v1/models/broken/predict", json={"inputs": records(1)})
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == "model_load_failed"
        assert error["message"].startswith("broken 1.0.0 failed to load: the python model")
        assert "the feature store is unreachable" in error["message"]
        clock.now += 0.5
        await asyncio.sleep(0.3)  # several watcher rounds
        assert attempts() == 1
        assert (await http.get("/readyz")).json()["failed"]["broken"]["retry_in_s"] == 0.5

        # Due: tried again, fails again, and the next wait doubles.
        clock.now += 0.5
        await _until(lambda: attempts() == 2, "the second attempt")
        failed = (await http.get("/readyz")).json()["failed"]["broken"]
        assert failed["attempts"] == 2 and failed["retry_in_s"] == 2.0
        assert _failure_lines(caplog)[-1].getMessage().endswith("; retrying in 2 s")
        clock.now += 1.9
        await asyncio.sleep(0.3)
        assert attempts() == 2

        # The cause goes away: the next attempt loads it, and it serves.
        marker.unlink()
        clock.now += 0.1
        await _until(lambda: pool.routes.get("broken") == "1.0.0", "the third attempt")
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["serving"] == {"iris": "1.0.0", "broken": "1.0.0"}
        assert ready.json()["failed"] == {} and ready.json()["loading"] == {}
        assert 'modelhost_model_load_failed{model="broken",version="1.0.0"} 0.0' in (
            await http.get("/metrics")).text
        response = await http.post("/v1/models/broken/predict", json={"inputs": records(2)})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [0, 0]
    assert attempts() == 2


@pytest.mark.anyio
async def test_backoff_is_capped(iris_client: Client, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    registry = iris_client.registry
    _register_broken(iris_client)
    marker = tmp_path / "broken"
    marker.touch()
    monkeypatch.setenv(BROKEN_MARKER_ENV, str(marker))
    caplog.set_level(logging.INFO, logger="modelhost")
    clock = Clock()
    options = PoolOptions(reload_interval_s=0.02, retry_initial_s=1.0, retry_max_s=4.0)
    app = create_app(registry, options=ServerOptions(pool=options), clock=clock)
    waits = []
    async with app.running():
        for attempt in range(1, 6):
            await _until(lambda n=attempt: len(_failure_lines(caplog)) == n,  # type: ignore[misc]
                         f"attempt {attempt}")
            detail = app.server.pool.ready()[1]["failed"]["broken"]
            waits.append(detail["retry_in_s"])
            clock.now += detail["retry_in_s"]
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
