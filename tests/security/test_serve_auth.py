"""`modelhost serve` turns authentication on by itself off loopback, and says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelhost import Client, Settings
from modelhost.cli.serve import is_loopback, resolve_auth
from tests.fixtures_models import iris_example, iris_model
from tests.serving.server import ServerProcess, server_env

pytestmark = pytest.mark.slow
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
    ("example.com", False),
])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert resolve_auth(None, host) == ("off" if loopback else "required")
    assert resolve_auth("required", host) == "required"
    assert resolve_auth("off", host) == "off"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("serve-auth") / "home"
    with Client(Settings(home=home)) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
        client.registry.transition("iris", "1.0.0", "staging")
        client.registry.transition("iris", "1.0.0", "production")
    return home


def _server(home: Path, *args: str, **env: str) -> ServerProcess:
    logs = home.parent / f"logs-{len(list(home.parent.iterdir()))}"
    logs.mkdir()
    return ServerProcess(args=list(args), env=server_env(home, **env), log_dir=logs)


@pytest.fixture(scope="module")
def public(home: Path) -> Iterator[ServerProcess]:
    # The last --host wins: this one binds every interface.
    server = _server(home, "--host", "0.0.0.0")
    server.start()
    try:
        yield server
    finally:
        server.terminate()


def test_a_server_on_every_interface_requires_keys(home: Path, public: ServerProcess) -> None:
    assert "authentication is on" in public.output()
    assert "no key exists yet" in public.output()
    with Client(Settings(home=home)) as client:
        secret = client.keys.create(name="scorer", role="predictor").secret
    with httpx.Client(base_url=public.base_url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.post("/v1/models/iris/predict", json={"inputs": [ROW]}).status_code == 401
        ok = http.post("/v1/models/iris/predict", json={"inputs": [ROW]},
                       headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200 and ok.json()["version"] == "1.0.0"


def test_turning_auth_off_off_loopback_is_loud(home: Path) -> None:
    server = _server(home, "--host", "0.0.0.0", MODELHOST_AUTH="off")
    server.start()
    try:
        assert "authentication is OFF (turned off by MODELHOST_AUTH=off)" in server.output()
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert http.post("/v1/models/iris/predict",
                             json={"inputs": [ROW]}).status_code == 200
    finally:
        server.terminate()
