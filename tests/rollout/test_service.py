"""The rollout service with its store: each strategy's start, the commands, the stages
that follow, the events and audit entries, the routing table servers build from it, and
bad or racing commands that change nothing; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from modelhost import Client
from modelhost.entities import RolloutState, Stage
from modelhost.errors import (
    ConflictError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    NothingToRollBackError,
    VersionNotFoundError,
)
from modelhost.rollout import ArmRole
from modelhost.rollout.service import RolloutService, for_registry
from modelhost.serving.table import RoutingTable
from tests.fixtures_models import iris_example, iris_model


@pytest.fixture
def iris(client: Client) -> Client:
    """iris 1.0.0 in production, 1.0.1 and 1.0.2 registered."""
    for _ in range(3):
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
    client.transition_stage("iris", "1.0.0", "staging")
    client.transition_stage("iris", "1.0.0", "production")
    return client


def stages(client: Client) -> dict[str, str]:
    return {v.version: v.stage.value for v in client.registry.list_versions("iris")}


def snapshot(client: Client) -> tuple[Any, ...]:
    """Everything a refused command must leave as it was."""
    return (client.rollouts.status("iris").to_dict(), stages(client),
            [e.to_dict() for e in client.rollouts.events("iris")],
            len(client.audit.list(limit=10_000)), client.registry.routing_state().revision)


def table(client: Client) -> RoutingTable:
    return RoutingTable.from_state(client.registry.routing_state())


def test_a_canary_splits_steps_and_promotes(iris: Client) -> None:
    d = iris.deploy("iris", "1.0.1", strategy="canary", steps=[10, 50, 100])
    assert (d.state, d.stable, d.candidate, d.step) == (RolloutState.PROGRESSING, "1.0.0",
                                                       "1.0.1", 0)
    assert d.weights == {"1.0.0": 0.9, "1.0.1": 0.1}
    routing = table(iris).routing("iris")
    assert routing is not None and routing.salt == d.rollout_id
    assert [(a.version, a.weight, a.role) for a in routing.arms] == [
        ("1.0.0", 0.9, ArmRole.STABLE), ("1.0.1", 0.1, ArmRole.CANDIDATE)]
    assert stages(iris)["1.0.0"] == "production"  # production moves only on promotion

    d = iris.rollouts.act("iris", "step")
    assert (d.step, d.weights) == (1, {"1.0.0": 0.5, "1.0.1": 0.5})
    d = iris.rollouts.act("iris", "step")  # the last step is 100%: the candidate is promoted
    assert (d.state, d.stable, d.candidate, d.previous) == (
        RolloutState.PROMOTED, "1.0.1", None, "1.0.0")
    assert stages(iris) == {"1.0.0": "archived", "1.0.1": "production", "1.0.2": "none"}
    entry = table(iris).models["iris"]
    assert entry.routing is not None and entry.routing.weights() == {"1.0.1": 1.0}
    assert entry.keep == frozenset({"1.0.0"})  # kept loaded for an instant rollback
    assert [e.kind for e in iris.rollouts.events("iris")] == ["deploy", "step", "promote"]
    actions = [e.action for e in iris.audit.list(limit=50)]
    assert {"deployment.deploy", "deployment.step", "deployment.promote"} <= set(actions)
    assert iris.audit.verify().ok

    d = iris.rollouts.rollback("iris", reason="errors after the promotion")
    assert (d.state, d.stable) == (RolloutState.ROLLED_BACK, "1.0.0")
    assert stages(iris) == {"1.0.0": "production", "1.0.1": "archived", "1.0.2": "none"}
    last = iris.rollouts.events("iris")[-1]
    assert (last.kind, last.from_version, last.to_version, last.reason) == (
        "rollback", "1.0.1", "1.0.0", "errors after the promotion")


def test_a_rollback_during_a_rollout_takes_the_candidate_out_at_once(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="ab", split=0.3)
    assert iris.rollouts.status("iris").weights == {"1.0.0": 0.7, "1.0.1": 0.3}
    d = iris.rollouts.rollback("iris")
    assert (d.state, d.weights, d.candidate) == (RolloutState.ROLLED_BACK, {"1.0.0": 1.0},
                                                 None)
    assert stages(iris)["1.0.0"] == "production" and stages(iris)["1.0.1"] == "none"
    assert table(iris).routing("iris").weights() == {"1.0.0": 1.0}  # type: ignore[union-attr]
    # A new rollout may start, with a new id (so keys draw their arms afresh).
    again = iris.deploy("iris", "1.0.2", strategy="canary")
    assert again.rollout_id != d.rollout_id and again.weights["1.0.2"] == 0.05


def test_blue_green_switches_at_once_and_a_first_version_needs_no_stable(
        client: Client) -> None:
    for _ in range(2):
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
    with pytest.raises(ConflictError, match="no production version"):
        client.deploy("iris", "1.0.0", strategy="canary")
    first = client.deploy("iris", "1.0.0", strategy="blue-green")
    assert (first.state, first.stable, first.previous) == (RolloutState.PROMOTED, "1.0.0",
                                                           None)
    second = client.deploy("iris", "latest", strategy="blue_green", keep_previous_s="30s")
    assert (second.stable, second.previous) == ("1.0.1", "1.0.0")
    assert second.keep_until is not None and second.updated_at is not None
    assert 29 <= (second.keep_until - second.updated_at).total_seconds() <= 31
    assert stages(client) == {"1.0.0": "archived", "1.0.1": "production"}
    assert [e.kind for e in client.rollouts.events("iris")] == [
        "deploy", "promote", "deploy", "promote"]


def test_a_shadow_copies_a_fraction_and_takes_no_live_traffic(iris: Client) -> None:
    d = iris.deploy("iris", "1.0.2", strategy="shadow", fraction=0.25)
    assert d.weights == {"1.0.0": 1.0}
    assert d.to_dict()["shadow"] == {"version": "1.0.2", "fraction": 0.25}
    routing = table(iris).routing("iris")
    assert routing is not None and routing.shadow is not None
    assert (routing.shadow.version, routing.shadow.fraction) == ("1.0.2", 0.25)
    assert [a.version for a in routing.arms] == ["1.0.0"]
    iris.rollouts.act("iris", "promote")
    assert stages(iris)["1.0.2"] == "production"


def test_pause_holds_resume_continues(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary")
    assert iris.rollouts.act("iris", "pause").state is RolloutState.PAUSED
    with pytest.raises(ConflictError, match="paused; resume it first"):
        iris.rollouts.act("iris", "step")
    with pytest.raises(ConflictError, match="cannot become paused"):
        iris.rollouts.act("iris", "pause")
    assert table(iris).routing("iris").weights() == {  # type: ignore[union-attr]
        "1.0.0": 0.95, "1.0.1": 0.05}  # pausing holds the split
    assert iris.rollouts.act("iris", "resume").state is RolloutState.PROGRESSING
    assert iris.rollouts.act("iris", "abort").state is RolloutState.ABORTED
    assert stages(iris)["1.0.0"] == "production"


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda c: c.deploy("iris", "1.0.1", strategy="rainbow"), InvalidInputError,
     "unknown strategy 'rainbow'"),
    (lambda c: c.deploy("iris", "1.0.1", strategy="canary", colour=1), InvalidInputError,
     "unknown option 'colour' for canary"),
    (lambda c: c.deploy("iris", "1.0.1", strategy="canary", split=0.5), InvalidInputError,
     "unknown option 'split' for canary"),
    (lambda c: c.deploy("iris", "1.0.1", strategy="canary", steps=[50, 10],
                        max_error_rate=2), InvalidInputError,
     "option 'steps' must be percentages that only grow.*option 'max_error_rate'"),
    (lambda c: c.deploy("iris", "1.0.1", strategy="ab", split=1.0), InvalidInputError,
     "split"),
    (lambda c: c.deploy("iris", "1.0.1", strategy="shadow", fraction=0), InvalidInputError,
     "option 'fraction' must be above 0"),
    (lambda c: c.deploy("iris", "1.0.1", strategy="canary", step_duration_s="soon"),
     InvalidInputError, "a duration"),
    (lambda c: c.deploy("iris", "9.9.9"), VersionNotFoundError, "9.9.9"),
    (lambda c: c.deploy("nope", "1.0.0"), ModelNotFoundError, "nope"),
    (lambda c: c.deploy("iris", "1.0.0"), ConflictError, "already in production"),
    (lambda c: c.rollouts.act("iris", "promote"), ConflictError, "no rollout under way"),
    (lambda c: c.rollouts.act("iris", "launch"), InvalidInputError, "unknown action"),
    (lambda c: c.rollouts.rollback("iris"), NothingToRollBackError, "no version"),
])
def test_bad_commands_are_refused_and_change_nothing(iris: Client, call: Any, error: type,
                                                     words: str) -> None:
    before = snapshot(iris)
    with pytest.raises(error, match=words):
        call(iris)
    assert snapshot(iris) == before


def test_a_second_rollout_while_one_runs_is_refused(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary")
    before = snapshot(iris)
    with pytest.raises(ConflictError, match=r"canary of iris 1\.0\.1 is progressing"):
        iris.deploy("iris", "1.0.2", strategy="blue-green")
    assert snapshot(iris) == before


def test_a_version_that_fails_its_check_is_refused(iris: Client) -> None:
    def fails(model: str, version: str) -> None:
        raise ModelLoadError(f"{model} {version}", "predicting its input example raised "
                             "ValueError")

    service = RolloutService(iris.deployments, check=fails)
    before = snapshot(iris)
    with pytest.raises(ModelLoadError, match="predicting its input example"):
        service.deploy("iris", "1.0.1", "canary")
    assert snapshot(iris) == before


def test_the_registry_check_predicts_the_input_example(iris: Client) -> None:
    checked = []
    service = for_registry(iris.deployments, iris.registry)
    original = iris.registry.load

    def load(name: str, ref: str, **kwargs: Any) -> Any:
        checked.append((name, ref))
        return original(name, ref, **kwargs)

    iris.registry.load = load  # type: ignore[method-assign]
    service.deploy("iris", "1.0.1", "canary")
    assert checked == [("iris", "1.0.1")]


def test_of_two_racing_promotes_one_wins_and_the_other_gets_409(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary")
    results: list[str] = []
    barrier = threading.Barrier(2)

    def promote() -> None:
        barrier.wait()
        try:
            iris.rollouts.act("iris", "promote")
            results.append("promoted")
        except ConflictError:
            results.append("409")

    threads = [threading.Thread(target=promote) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["409", "promoted"]
    assert [e.kind for e in iris.rollouts.events("iris")] == ["deploy", "promote"]
    assert stages(iris)["1.0.1"] == "production" and stages(iris)["1.0.0"] == "archived"


def test_a_promote_racing_a_rollback_leaves_one_consistent_outcome(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary")
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def run(name: str, command: Any) -> None:
        barrier.wait()
        try:
            command()
            outcomes[name] = "ok"
        except ConflictError:
            outcomes[name] = "409"

    threads = [threading.Thread(target=run, args=("promote", lambda: iris.rollouts.act(
                   "iris", "promote"))),
               threading.Thread(target=run, args=("rollback", lambda: iris.rollouts.rollback(
                   "iris")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    d = iris.rollouts.status("iris")
    if outcomes["promote"] == "ok" and outcomes["rollback"] == "ok":
        # The promote came first; the rollback then undid the promotion.
        assert (d.state, d.stable) == (RolloutState.ROLLED_BACK, "1.0.0")
    elif outcomes["promote"] == "ok":
        raise AssertionError(f"a rollback after a promotion must succeed: {outcomes}")
    else:
        assert outcomes == {"promote": "409", "rollback": "ok"}
        assert (d.state, d.stable) == (RolloutState.ROLLED_BACK, "1.0.0")
    assert stages(iris)["1.0.0"] == Stage.PRODUCTION.value
    assert iris.audit.verify().ok
