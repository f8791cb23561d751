"""The rollout controller on counts stored as the servers store them (live-profile
windows from several workers, labelled predictions): a canary steps, promotes, or is
rolled back with an event that names what it saw; an A/B test declares the better arm
(and promotes it when asked); a stale decision never overrides a user's command; on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson
import pytest

from modelhost import Client
from modelhost._utils import utcnow
from modelhost.entities import RolloutState
from modelhost.errors import ConflictError
from modelhost.rollout.controller import Controller
from modelhost.stats import profile as prof
from modelhost.store.monitoring import Label, LogEntry
from modelhost.store.profiles import WindowCounts
from tests.fixtures_models import iris_example, iris_model


@pytest.fixture
def iris(client: Client) -> Client:
    """iris 1.0.0 in production, 1.0.1 registered."""
    for _ in range(2):
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
    client.transition_stage("iris", "1.0.0", "staging")
    client.transition_stage("iris", "1.0.0", "production")
    return client


def counted(client: Client, version: str, *, requests: int, errors: int = 0,
            latency_s: float = 0.004, worker: str = "w1") -> None:
    """One worker's minute window for ``version``: what LiveProfiles writes."""
    vector = np.zeros(prof.HEADER)
    vector[prof.REQUESTS], vector[prof.ERRORS] = requests, errors
    slot = int(np.searchsorted(prof.LATENCY_EDGES_S, latency_s, side="right"))
    vector[prof.LATENCY_BINS + slot] = requests
    minute = utcnow().replace(second=0, microsecond=0)
    client.profiles.write_windows([WindowCounts("iris", version, 60, minute, worker, "d",
                                                vector.tobytes())])


def labelled(client: Client, version: str, *, right: int, wrong: int) -> None:
    """Labelled one-row predictions of ``version``: ``right`` correct, ``wrong`` not."""
    entries, labels = [], []
    for i in range(right + wrong):
        rid = f"{version}-{i}"
        entries.append(LogEntry(rid, "iris", version, None, utcnow(), 1, "[]",
                                orjson.dumps({"predictions": ["setosa"]}).decode()))
        label = "setosa" if i < right else "virginica"
        labels.append(Label(rid, "iris", version, orjson.dumps([label]).decode()))
    client.predictions.append(entries)
    client.predictions.record_feedback(labels, now=utcnow())


def controller(client: Client) -> Controller:
    return Controller(client.rollouts, client.profiles, predictions=client.predictions)


CANARY: dict[str, Any] = {"steps": [10, 50, 100], "min_requests": 100,
                          "step_duration_s": 0}


def test_a_healthy_canary_steps_and_is_promoted(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    run = controller(iris)
    assert run.tick() == []  # nothing counted yet: hold
    counted(iris, "1.0.0", requests=900, errors=2)
    counted(iris, "1.0.1", requests=60, worker="w1")
    counted(iris, "1.0.1", requests=60, worker="w2")  # two workers' windows add up
    [stepped] = run.tick()
    assert (stepped.step, stepped.candidate_weight) == (1, 0.5)
    event = iris.rollouts.events("iris")[-1]
    assert event.kind == "step" and event.actor is not None
    assert event.numbers["candidate_requests"] == 120
    assert event.numbers["stable_requests"] == 900
    assert event.reason.startswith("step passed: error rate 0.0%")
    [promoted] = run.tick()  # the same minute's windows count for the next step too
    assert (promoted.state, promoted.stable) == (RolloutState.PROMOTED, "1.0.1")
    assert [e.kind for e in iris.rollouts.events("iris")] == ["deploy", "step", "promote"]


def test_a_failing_candidate_is_rolled_back_with_the_error_rate_it_saw(
        iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    counted(iris, "1.0.0", requests=1000, errors=1)
    counted(iris, "1.0.1", requests=150, errors=30)
    [rolled] = controller(iris).tick()
    assert (rolled.state, rolled.stable, rolled.weights) == (
        RolloutState.ROLLED_BACK, "1.0.0", {"1.0.0": 1.0})
    event = iris.rollouts.events("iris")[-1]
    assert event.kind == "rollback"
    assert "error rate is 20.0% (30 of 150 requests)" in event.reason
    assert event.numbers["candidate_error_rate"] == 0.2


def test_errors_that_cannot_pass_roll_back_before_min_requests(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", steps=[10, 100], min_requests=500)
    counted(iris, "1.0.0", requests=400)
    counted(iris, "1.0.1", requests=40, errors=25)
    [rolled] = controller(iris).tick()
    assert rolled.state is RolloutState.ROLLED_BACK


def test_too_few_requests_or_too_little_time_hold(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", min_requests=100,
                step_duration_s=3600)
    counted(iris, "1.0.0", requests=500)
    counted(iris, "1.0.1", requests=50)
    run = controller(iris)
    assert run.tick() == []
    assert run.analysis("iris")["verdict"]["reason"] == "50 of 100 requests at this step"
    counted(iris, "1.0.1", requests=80, worker="w2")
    assert run.tick() == []
    assert run.analysis("iris")["verdict"]["reason"].endswith("of 3600 s at this step")
    assert iris.rollouts.status("iris").step == 0


def test_a_slow_candidate_is_rolled_back_naming_its_p99(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    counted(iris, "1.0.0", requests=800, latency_s=0.004)
    counted(iris, "1.0.1", requests=150, latency_s=0.040)
    [rolled] = controller(iris).tick()
    assert rolled.state is RolloutState.ROLLED_BACK
    reason = iris.rollouts.events("iris")[-1].reason
    assert "p99 latency" in reason and "times the stable version's" in reason


def test_a_less_accurate_candidate_is_rolled_back_on_feedback(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", min_labelled=40, **CANARY)
    counted(iris, "1.0.0", requests=800)
    counted(iris, "1.0.1", requests=150)
    labelled(iris, "1.0.0", right=95, wrong=5)
    labelled(iris, "1.0.1", right=30, wrong=20)
    analysis = controller(iris).analysis("iris")
    arms = {a["role"]: a for a in analysis["arms"]}
    assert arms["candidate"]["labelled"] == 50
    assert arms["candidate"]["metric"] == {"name": "accuracy", "value": 0.6}
    assert arms["stable"]["metric"] == {"name": "accuracy", "value": 0.95}
    [rolled] = controller(iris).tick()
    assert rolled.state is RolloutState.ROLLED_BACK
    assert "accuracy is 0.6 against 0.95" in iris.rollouts.events("iris")[-1].reason


def test_an_ab_test_declares_the_better_arm_once(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="ab", split=0.5, min_samples=200)
    labelled(iris, "1.0.0", right=420, wrong=180)  # 70%
    labelled(iris, "1.0.1", right=540, wrong=60)  # 90%
    run = controller(iris)
    run.tick()
    d = iris.rollouts.status("iris")
    assert d.state is RolloutState.PROGRESSING  # no auto-promotion unless asked
    assert d.analysis["decision"] == "candidate_better"
    assert d.analysis["always_valid_p"] < 0.05
    decision = iris.rollouts.events("iris")[-1]
    assert decision.kind == "decision" and "candidate better" in decision.reason
    assert decision.numbers["method"] == "msprt" and decision.numbers["lift"] > 0.15
    lo, hi = decision.numbers["ci"]
    assert 0 < lo < 0.2 < hi
    run.tick()  # decided once: no second event
    assert [e.kind for e in iris.rollouts.events("iris")] == ["deploy", "decision"]
    ab = run.analysis("iris")["ab"]
    assert ab["decision"] == "candidate_better" and ab["fixed"]["method"] == "two_proportion_z"


def test_an_ab_test_with_auto_promote_promotes_the_winner(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="ab", auto_promote=True, min_samples=200)
    labelled(iris, "1.0.0", right=420, wrong=180)
    labelled(iris, "1.0.1", right=540, wrong=60)
    [promoted] = controller(iris).tick()
    assert (promoted.state, promoted.stable) == (RolloutState.PROMOTED, "1.0.1")
    assert iris.rollouts.events("iris")[-1].reason.startswith(
        "A/B test: the candidate is better (accuracy lift +0.2")


def test_an_ab_test_without_enough_labels_continues_and_remembers_nothing_new(
        iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="ab")
    labelled(iris, "1.0.0", right=50, wrong=50)
    assert controller(iris).tick() == []
    d = iris.rollouts.status("iris")
    assert d.analysis == {"always_valid_p": 1.0, "decision": "continue"}
    assert [e.kind for e in iris.rollouts.events("iris")] == ["deploy"]


def test_a_decision_on_a_stale_rollout_is_refused(iris: Client) -> None:
    first = iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    iris.rollouts.act("iris", "abort")
    iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    before = [e.to_dict() for e in iris.rollouts.events("iris")]
    with pytest.raises(ConflictError, match="changed meanwhile"):
        iris.rollouts.act("iris", "step", expect=first.rollout_id)
    with pytest.raises(ConflictError, match="changed meanwhile"):
        iris.rollouts.act("iris", "step", expect_step=3)
    with pytest.raises(ConflictError, match="changed meanwhile"):
        iris.rollouts.rollback("iris", expect=first.rollout_id)
    assert [e.to_dict() for e in iris.rollouts.events("iris")] == before


def test_paused_rollouts_are_left_alone(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    iris.rollouts.act("iris", "pause")
    counted(iris, "1.0.0", requests=100)
    counted(iris, "1.0.1", requests=150, errors=100)
    assert controller(iris).tick() == []
    assert iris.rollouts.status("iris").state is RolloutState.PAUSED


def test_the_analysis_of_an_idle_model_is_empty(iris: Client) -> None:
    assert controller(iris).analysis("iris") == {
        "model": "iris", "state": "idle", "strategy": None, "arms": [], "verdict": None,
        "ab": None, "shadow": None}


def test_the_window_of_a_step_starts_at_its_minute(iris: Client) -> None:
    iris.deploy("iris", "1.0.1", strategy="canary", **CANARY)
    old = utcnow().replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    vector = np.zeros(prof.HEADER)
    vector[prof.REQUESTS], vector[prof.ERRORS] = 500, 400
    iris.profiles.write_windows([WindowCounts("iris", "1.0.1", 60, old, "w1", "d",
                                              vector.tobytes())])
    assert controller(iris).tick() == []  # five minutes before the step: not counted
