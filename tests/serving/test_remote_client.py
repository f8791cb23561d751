"""``modelhost.Client("http://...", api_key=...)``: a real ``modelhost serve`` with auth
required, driven from Python over HTTP as a deployer, a predictor and a viewer would
from another machine (PRODUCT.md §4).

The rollout controller is off, so the rollout moves only when these tests move it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.serving.server import ServerProcess, free_port, server_env

from modelhost import Client, RemoteClient, Settings
from modelhost.entities import Deployment, RolloutState, Strategy
from modelhost.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    StoreUnavailableError,
    UnauthorizedError,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("remote-client") / "home"
    bunch = load_iris(as_frame=True)
    X = bunch.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    with Client(Settings(home=home)) as client:
        for c in (1.0, 0.5):
            mv = client.registry.register(LogisticRegression(C=c, max_iter=1000)
                                          .fit(X, bunch.target), name="iris",
                                          input_example=X.head(5))
            if mv.version == "1.0.0":
                client.transition_stage("iris", "1.0.0", "staging")
                client.transition_stage("iris", "1.0.0", "production")
    return home


@pytest.fixture(scope="module")
def keys(home: Path) -> dict[str, str]:
    with Client(Settings(home=home)) as client:
        return {role: client.keys.create(name=f"{role} key", role=role).secret
                for role in ("deployer", "predictor", "viewer")}


@pytest.fixture(scope="module")
def server(home: Path, keys: dict[str, str]) -> Iterator[ServerProcess]:
    logs = home.parent / "logs"
    logs.mkdir()
    process = ServerProcess(args=[], log_dir=logs, env=server_env(
        home, MODELHOST_AUTH="required", MODELHOST_ROLLOUTS="false",
        MODELHOST_MONITOR_FLUSH_S="0.3"))
    process.start()
    try:
        yield process
    finally:
        if process.running:
            assert process.terminate() == 0, process.output()


def remote(server: ServerProcess, key: str | None) -> RemoteClient:
    client = Client(server.base_url, api_key=key)
    assert isinstance(client, RemoteClient)
    return client


ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_a_deployer_drives_a_canary_from_python(server: ServerProcess,
                                                keys: dict[str, str]) -> None:
    with remote(server, keys["deployer"]) as deployer, \
            remote(server, keys["predictor"]) as predictor, \
            remote(server, keys["viewer"]) as viewer:
        started = deployer.deploy("iris", "latest", strategy="canary", steps=[50, 75, 100])
        assert isinstance(started, Deployment)
        assert (started.state, started.strategy, started.stable, started.candidate) == (
            RolloutState.PROGRESSING, Strategy.CANARY, "1.0.0", "1.0.1")
        assert started.weights == {"1.0.0": 0.5, "1.0.1": 0.5}
        assert viewer.deployment("iris").to_dict() == started.to_dict()

        # A second rollout while one runs: the server's 409, as the local error.
        with pytest.raises(ConflictError, match="is progressing"):
            deployer.deploy("iris", "1.0.0", strategy="blue_green")

        # Predictions follow the split (once the server has loaded the candidate, within
        # its reload interval); a routing key sticks to its arm, a pin wins.
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while seen != {"1.0.0", "1.0.1"} and time.monotonic() < deadline:
            seen.add(predictor.predict("iris", [ROW])["version"])
        assert seen == {"1.0.0", "1.0.1"}
        sticky = {predictor.predict("iris", [ROW], routing_key="user-7")["version"]
                  for _ in range(10)}
        assert len(sticky) == 1
        assert predictor.predict("iris", [ROW], version="1.0.0")["version"] == "1.0.0"
        answer = predictor.predict("iris", {k: [v] for k, v in ROW.items()})
        assert answer["model"] == "iris" and len(answer["predictions"]) == 1
        assert predictor.feedback(answer["request_id"], 0) == {"accepted": 1}

        stepped = deployer.rollout("iris", "step", reason="looks fine")
        assert stepped.weights == {"1.0.0": 0.25, "1.0.1": 0.75} and stepped.step == 1
        promoted = deployer.rollout("iris", "promote")
        assert (promoted.state, promoted.stable) == (RolloutState.PROMOTED, "1.0.1")
        assert viewer.get_model_version("iris", "@production").version == "1.0.1"

        back = deployer.rollback("iris", reason="remote check")
        assert (back.state, back.stable) == (RolloutState.ROLLED_BACK, "1.0.0")
        events = viewer.events("iris")
        assert [e.kind for e in events][-4:] == ["deploy", "step", "promote", "rollback"]
        assert events[-1].reason == "remote check" and events[-1].model == "iris"
        assert events[-1].at.tzinfo is not None and events[-1].at <= dt.datetime.now(
            dt.timezone.utc)
        assert [m.name for m in viewer.list_models()] == ["iris"]


def test_errors_come_back_as_modelhost_errors(server: ServerProcess,
                                              keys: dict[str, str]) -> None:
    with remote(server, keys["deployer"]) as deployer:
        with pytest.raises(NotFoundError) as unknown:
            deployer.deploy("ghost", "1.0.0")
        assert "ghost" in unknown.value.message
        with pytest.raises(InvalidInputError, match="step_duration_s") as bad:
            deployer.deploy("iris", "1.0.1", strategy="canary", step_duration_s=-1)
        assert "step_duration_s" in str(bad.value.details or bad.value.message)
        with pytest.raises(InvalidInputError, match="unknown action"):
            deployer.rollout("iris", "launch")
    # The deployment did not change.
    with remote(server, keys["viewer"]) as viewer:
        assert viewer.deployment("iris").state is RolloutState.ROLLED_BACK
        with pytest.raises(ForbiddenError):
            viewer.rollback("iris")
    with remote(server, None) as anonymous, pytest.raises(UnauthorizedError):
        anonymous.deployment("iris")
    with remote(server, "mh_nope_" + "x" * 40) as wrong:
        with pytest.raises(UnauthorizedError) as denied:
            wrong.deployment("iris")
        assert "x" * 40 not in str(denied.value) and "x" * 40 not in repr(wrong)


def test_an_unreachable_server_is_said_so() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", api_key="mh_secret_token",
                timeout_s=2) as nowhere:
        with pytest.raises(StoreUnavailableError, match="could not be reached") as down:
            nowhere.deployment("iris")
        assert "mh_secret_token" not in str(down.value)


def test_only_a_server_address_makes_a_remote_client() -> None:
    with pytest.raises(InvalidInputError, match="http:// or https://"):
        Client("ftp://host/models")
