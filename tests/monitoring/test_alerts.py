"""Alert rules and their evaluation (monitoring/alerts.py): AlertService checks every field
and stores nothing it refuses; the Evaluator fires a rule only when its metric crosses the
threshold with enough samples, on the version in production at evaluation (or the pinned
one), at most once per cooldown; MonitorMetrics measures quality from the prediction log
and feedback, traffic and drift from the live profiles; describe() says why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from modelhost import Client
from modelhost.entities import Lineage, SemVer
from modelhost.errors import (
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    VersionNotFoundError,
)
from modelhost.monitoring.alerts import (
    METRICS,
    AlertService,
    Evaluator,
    Health,
    Measurement,
    MonitorMetrics,
    describe,
    duration_text,
    event_dict,
    resolver,
    rule_dict,
)
from modelhost.monitoring.drift import DriftService
from modelhost.stats import profile as prof
from modelhost.stats.profile import Layout, Reference, build_reference
from modelhost.store import ModelStore, NewVersion
from modelhost.store.alerts import AlertEvent, AlertRule, AlertStore
from modelhost.store.monitoring import Label, LogEntry, PredictionLogStore
from modelhost.store.profiles import HOUR_S, MINUTE_S, ProfileStore, StoredReference, WindowCounts

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
BASE: dict[str, Any] = {"model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8}


def _register(client: Client, version: str, name: str = "iris",
              metrics: dict[str, float] | None = None) -> None:
    number = SemVer.parse(version)
    ModelStore(client.db).create_version(
        NewVersion(model=name, flavor="python", flavor_meta={}, artifact_digest="0" * 64,
                   artifact_size=1, signature=None, input_example=None, lineage=Lineage(),
                   metrics=metrics or {}),
        lambda latest: number)


@pytest.fixture
def client(sqlite_client: Client) -> Client:
    """A registry with the model iris (1.0.0, 1.0.1); nothing in production."""
    _register(sqlite_client, "1.0.0", metrics={"accuracy": 0.9})
    _register(sqlite_client, "1.0.1")
    return sqlite_client


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    (folder / "retrain").mkdir(parents=True)
    (folder / "retrain" / "modelhost.yaml").write_text("name: retrain\n")
    (folder / "nightly.yaml").write_text("name: nightly\n")
    (folder / "empty").mkdir()
    (tmp_path / "outside.yaml").write_text("name: outside\n")
    return folder


def _service(client: Client, pipelines_dir: Path | None = None) -> AlertService:
    return AlertService(client.alert_store, resolve=resolver(client.registry),
                        pipelines_dir=pipelines_dir)


# --- AlertService.add -----------------------------------------------------------------------


def test_a_minimal_rule_takes_the_defaults(client: Client) -> None:
    before = dt.datetime.now(UTC)
    rule = _service(client).add(dict(BASE), actor="cli:alice")
    assert (rule.model, rule.version, rule.metric, rule.op, rule.threshold, rule.window_s,
            rule.min_samples, rule.cooldown_s, rule.action, dict(rule.options),
            rule.created_by, rule.last_fired_at) == (
        "iris", None, "accuracy", "<", 0.8, 3600, 100, 3600, "log", {}, "cli:alice", None)
    assert len(rule.id) == 16 and before <= rule.created_at <= dt.datetime.now(UTC)
    assert client.alert_store.rules() == [rule]
    assert [e.target for e in client.audit.list(action="alert.add")] == [f"alert:{rule.id}"]


def test_every_field_given(client: Client, pipelines: Path) -> None:
    service = _service(client, pipelines)
    hook = service.add({**BASE, "version": " 1.0.1 ", "metric": "f1_change", "op": ">=",
                        "threshold": -0.05, "window": "30m", "min_samples": 1,
                        "cooldown": "2D", "action": "webhook",
                        "url": "https://u:p@hooks.example.com/x?token=t"}, actor="a")
    assert (hook.version, hook.metric, hook.op, hook.threshold, hook.window_s,
            hook.min_samples, hook.cooldown_s, hook.action, dict(hook.options)) == (
        "1.0.1", "f1_change", ">=", -0.05, 1800, 1, 172800, "webhook",
        {"url": "https://u:p@hooks.example.com/x?token=t"})
    shown = rule_dict(hook)
    assert shown["url"] == "https://hooks.example.com/x?..." and "spec" not in shown
    assert set(shown) == {"id", "model", "version", "metric", "op", "threshold", "window_s",
                          "min_samples", "cooldown_s", "action", "url", "created_at",
                          "created_by", "last_fired_at"}
    folder = service.add({**BASE, "action": "pipeline", "spec": "retrain",
                          "min_samples": 1_000_000_000, "threshold": 1}, actor="a")
    assert dict(folder.options) == {"spec": "retrain"} and folder.threshold == 1.0
    assert rule_dict(folder)["spec"] == "retrain"
    assert service.add({**BASE, "action": "pipeline", "spec": "nightly.yaml"},
                       actor="a").options == {"spec": "nightly.yaml"}
    assert service.add({**BASE, "action": "rollback"}, actor="a").options == {}
    assert [r.id for r in service.rules()] == [r.id for r in client.alert_store.rules()]
    assert len(service.rules("iris")) == 4 and service.rules("other") == []


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != key}


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "unknown field": ({**BASE, "severity": "high", "zz": 1},
                      r"unknown field\(s\): severity, zz \(known: action, cooldown"),
    "missing model": (_without("model"), r"'model' is required"),
    "blank model": ({**BASE, "model": "  "}, r"'model' must be a non-empty string"),
    "model not a string": ({**BASE, "model": 3}, r"'model' must be a non-empty string"),
    "missing metric": (_without("metric"), r"'metric' is required"),
    "unknown metric": ({**BASE, "metric": "auc"}, r"unknown metric 'auc' \(one of: accuracy"),
    "missing op": (_without("op"), r"'op' is required"),
    "unknown op": ({**BASE, "op": "=="}, r"unknown op '==' \(one of: <, <=, >, >=\)"),
    "missing threshold": (_without("threshold"), r"'threshold' is required"),
    "null threshold": ({**BASE, "threshold": None}, r"'threshold' is required"),
    "nan threshold": ({**BASE, "threshold": float("nan")}, r"threshold must be finite"),
    "infinite threshold": ({**BASE, "threshold": float("inf")}, r"threshold must be finite"),
    "boolean threshold": ({**BASE, "threshold": True}, r"threshold must be a number"),
    "text threshold": ({**BASE, "threshold": "0.8"}, r"threshold must be a number"),
    "window zero": ({**BASE, "window": "0m"}, r"'0m' is not a duration"),
    "window words": ({**BASE, "window": "an hour"}, r"'an hour' is not a duration"),
    "window number": ({**BASE, "window": 3600}, r"'window' must be a non-empty string"),
    "window too long": ({**BASE, "window": "6000w"}, r"longer than 100 years"),
    "cooldown negative": ({**BASE, "cooldown": "-1h"}, r"'-1h' is not a duration"),
    "cooldown blank": ({**BASE, "cooldown": ""}, r"'cooldown' must be a non-empty string"),
    "min_samples 0": ({**BASE, "min_samples": 0}, r"'min_samples' must be a whole number"),
    "min_samples bool": ({**BASE, "min_samples": True}, r"got True"),
    "min_samples float": ({**BASE, "min_samples": 50.0}, r"got 50\.0"),
    "min_samples text": ({**BASE, "min_samples": "50"}, r"got '50'"),
    "min_samples too big": ({**BASE, "min_samples": 1_000_000_001}, r"1,000,000,000"),
    "unknown action": ({**BASE, "action": "email"}, r"unknown action 'email' \(one of: log"),
    "url without webhook": ({**BASE, "url": "https://hooks.example.com"},
                            r"'url' is for the webhook action only"),
    "spec without pipeline": ({**BASE, "action": "rollback", "spec": "nightly.yaml"},
                              r"'spec' is for the pipeline action only"),
    "webhook without url": ({**BASE, "action": "webhook"}, r"the webhook action needs 'url'"),
    "webhook ftp": ({**BASE, "action": "webhook", "url": "ftp://hooks.example.com/x"},
                    r"an http:// or https:// address"),
    "webhook no scheme": ({**BASE, "action": "webhook", "url": "hooks.example.com/x"},
                          r"an http:// or https:// address"),
    "webhook no host": ({**BASE, "action": "webhook", "url": "https:///hook"},
                        r"an http:// or https:// address"),
    "webhook port out of range": ({**BASE, "action": "webhook",
                                   "url": "http://hooks.example.com:99999/x"},
                                  r"'http://hooks.example.com:99999/x' does not parse"),
    "webhook port not a number": ({**BASE, "action": "webhook",
                                   "url": "http://hooks.example.com:http/x"},
                                  r"does not parse"),
    "pipeline without spec": ({**BASE, "action": "pipeline"},
                              r"the pipeline action needs 'spec'"),
    "spec escaping": ({**BASE, "action": "pipeline", "spec": "../outside.yaml"},
                      r"pipeline '\.\./outside\.yaml' is outside the pipelines folder"),
    "spec absolute": ({**BASE, "action": "pipeline", "spec": "/etc/hostname"},
                      r"is outside the pipelines folder"),
    "spec missing": ({**BASE, "action": "pipeline", "spec": "nope.yaml"},
                     r"pipeline 'nope\.yaml' is not a pipeline file"),
    "spec folder without modelhost.yaml": ({**BASE, "action": "pipeline", "spec": "empty"},
                                           r"'empty' is not a pipeline file"),
    "blank version": ({**BASE, "version": ""}, r"'version' must be a non-empty string"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_rule_that_does_not_hold_together_is_refused_and_nothing_stored(
        client: Client, pipelines: Path, case: str) -> None:
    spec, message = REFUSED[case]
    entries = client.audit.verify().entries
    with pytest.raises(InvalidInputError, match=message) as caught:
        _service(client, pipelines).add(spec, actor="a")
    assert caught.value.code == "invalid_input"
    assert str(caught.value).startswith("the alert rule is not valid: ")
    assert client.alert_store.rules() == []
    assert client.audit.verify().entries == entries


def test_pipeline_actions_need_the_pipelines_folder(client: Client, pipelines: Path) -> None:
    with pytest.raises(InvalidInputError, match="pipeline actions need "
                       "MODELHOST_PIPELINES_DIR"):
        _service(client).add({**BASE, "action": "pipeline", "spec": "nightly.yaml"},
                             actor="a")
    assert client.alert_store.rules() == []


def test_an_unknown_model_is_the_registrys_not_found(client: Client) -> None:
    entries = client.audit.verify().entries
    with pytest.raises(ModelNotFoundError) as caught:
        _service(client).add({**BASE, "model": "nope"}, actor="a")
    assert caught.value.code == "not_found"
    assert client.alert_store.rules() == []
    assert client.audit.verify().entries == entries


def test_a_rule_is_a_mapping(client: Client) -> None:
    with pytest.raises(InvalidInputError, match="an alert rule is a JSON object"):
        _service(client).add(["model", "iris"], actor="a")  # type: ignore[arg-type]


def test_every_problem_is_named_in_one_error(client: Client, pipelines: Path) -> None:
    spec = {"model": "", "metric": "auc", "op": "=", "threshold": "high", "window": "soon",
            "cooldown": 5, "min_samples": 0, "action": "email", "bogus": 1}
    with pytest.raises(InvalidInputError) as caught:
        _service(client, pipelines).add(spec, actor="a")
    message = str(caught.value)
    assert message.startswith("the alert rule is not valid: unknown field(s): bogus")
    for part in ("'model' must be a non-empty string", "unknown metric 'auc'",
                 "unknown op '='", "threshold must be a number, got 'high'",
                 "'soon' is not a duration", "'cooldown' must be a non-empty string",
                 "'min_samples' must be a whole number from 1 to 1,000,000,000, got 0",
                 "unknown action 'email'"):
        assert part in message, part
    assert client.alert_store.rules() == []
    # The fields first: a wrong field of a rule for an unknown model is 422, not 404.
    with pytest.raises(InvalidInputError, match="unknown op"):
        _service(client).add({**BASE, "model": "nope", "op": "="}, actor="a")


def test_a_version_is_checked_and_stored_as_the_number_it_names(client: Client) -> None:
    service = _service(client)
    client.registry.set_alias("iris", "champion", "1.0.0")
    assert service.add({**BASE, "version": "champion"}, actor="a").version == "1.0.0"
    assert service.add({**BASE, "version": "latest"}, actor="a").version == "1.0.1"
    entries = client.audit.verify().entries
    for ref in ("9.9.9", "@production", "challenger"):  # nothing in production here
        with pytest.raises(VersionNotFoundError) as caught:
            service.add({**BASE, "version": ref}, actor="a")
        assert caught.value.code == "not_found"
    assert [r.version for r in service.rules()] == ["1.0.0", "1.0.1"]
    assert client.audit.verify().entries == entries


def test_events_limit_is_checked(client: Client) -> None:
    service = _service(client)
    assert service.events(limit=1) == [] and service.events(limit=10_000) == []
    for limit in (0, 10_001):
        with pytest.raises(InvalidInputError, match="limit must be from 1 to 10,000"):
            service.events(limit=limit)


def test_removing_a_rule_keeps_its_events(client: Client) -> None:
    service = _service(client)
    rule = service.add({**BASE, "min_samples": 1}, actor="a")
    source = FakeSource({("iris", "1.0.0", "accuracy"): Measurement(0.5, 10)})
    fired = Evaluator(client.alert_store, source, production=lambda m: "1.0.0",
                      now=lambda: NOW).evaluate()
    assert [r.id for r, _ in fired] == [rule.id]
    service.remove(rule.id)
    assert service.rules() == []
    assert [e.rule_id for e in service.events()] == [rule.id]
    assert [e.rule_id for e in service.events(rule_id=rule.id, model="iris")] == [rule.id]


# --- the Evaluator --------------------------------------------------------------------------


class FakeSource:
    """A MetricSource that answers from a table and records what it was asked."""

    def __init__(self, answers: dict[tuple[str, str, str], Measurement],
                 during: Callable[[], object] | None = None) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str, dt.datetime, dt.datetime]] = []
        self._during = during

    def measure(self, model: str, version: str, metric: str, *, start: dt.datetime,
                end: dt.datetime) -> Measurement:
        self.calls.append((model, version, metric, start, end))
        if self._during is not None:
            during, self._during = self._during, None
            during()
        return self.answers.get((model, version, metric), Measurement(None, 0))


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _add(store: AlertStore, rule_id: str = "r1", *, op: str = "<", threshold: float = 0.8,
         min_samples: int = 10, version: str | None = None, cooldown_s: int = 3600,
         model: str = "iris", metric: str = "accuracy", window_s: int = 3600,
         created_at: dt.datetime = NOW - HOUR) -> AlertRule:
    return store.add(AlertRule(
        id=rule_id, model=model, version=version, metric=metric, op=op, threshold=threshold,
        window_s=window_s, min_samples=min_samples, cooldown_s=cooldown_s, action="log",
        options={}, created_at=created_at, created_by="t"))


@pytest.mark.parametrize(("op", "value", "threshold", "fires"), [
    ("<", 0.79, 0.8, True), ("<", 0.8, 0.8, False), ("<", 0.81, 0.8, False),
    ("<=", 0.8, 0.8, True), ("<=", 0.81, 0.8, False),
    (">", 0.81, 0.8, True), (">", 0.8, 0.8, False),
    (">=", 0.8, 0.8, True), (">=", 0.79, 0.8, False),
    ("<", -math.inf, 0.0, True), (">", math.inf, 0.0, True),
])
def test_a_rule_fires_when_value_op_threshold_holds(client: Client, op: str, value: float,
                                                    threshold: float, fires: bool) -> None:
    store = client.alert_store
    _add(store, op=op, threshold=threshold)
    source = FakeSource({("iris", "1.0.0", "accuracy"): Measurement(value, 10)})
    fired = Evaluator(store, source, production=lambda m: "1.0.0", now=lambda: NOW).evaluate()
    assert len(fired) == int(fires)
    assert len(store.events()) == int(fires)
    if fires:
        rule, event = fired[0]
        assert rule.id == "r1" and store.events() == [event]
        assert (event.version, event.value, event.samples, event.status, event.outcome,
                event.at) == ("1.0.0", value, 10, "pending", "log pending", NOW)


@pytest.mark.parametrize(("measurement", "fires"), [
    (Measurement(0.1, 10), True),  # exactly min_samples
    (Measurement(0.1, 9), False),  # one short
    (Measurement(None, 1000), False),  # nothing measured: never fires
    (Measurement(None, 0), False),
])
def test_too_few_samples_or_no_value_never_fire(client: Client, measurement: Measurement,
                                                fires: bool) -> None:
    store = client.alert_store
    _add(store, min_samples=10)
    source = FakeSource({("iris", "1.0.0", "accuracy"): measurement})
    assert len(Evaluator(store, source, production=lambda m: "1.0.0",
                         now=lambda: NOW).evaluate()) == int(fires)
    assert len(store.events()) == int(fires)


def test_the_production_version_is_resolved_at_each_evaluation(client: Client) -> None:
    store = client.alert_store
    _add(store, cooldown_s=60, window_s=1800)
    production: dict[str, str | None] = {"iris": None}
    asked: list[str] = []

    def current(model: str) -> str | None:
        asked.append(model)
        return production[model]

    bad = Measurement(0.5, 100)
    source = FakeSource({("iris", "1.0.0", "accuracy"): bad,
                         ("iris", "1.0.1", "accuracy"): bad})
    clock = Clock(NOW)
    evaluator = Evaluator(store, source, production=current, now=clock)
    assert evaluator.evaluate() == []  # nothing in production: skipped, not measured
    assert asked == ["iris"] and source.calls == []
    production["iris"] = "1.0.0"
    (_, first), = evaluator.evaluate()
    assert first.version == "1.0.0"
    assert source.calls == [("iris", "1.0.0", "accuracy", NOW - 30 * MINUTE, NOW)]
    production["iris"] = "1.0.1"  # promoted meanwhile
    clock.now = NOW + HOUR
    (_, second), = evaluator.evaluate()
    assert second.version == "1.0.1"
    assert source.calls[-1] == ("iris", "1.0.1", "accuracy", NOW + 30 * MINUTE, NOW + HOUR)


def test_a_pinned_version_ignores_production(client: Client) -> None:
    store = client.alert_store
    _add(store, version="1.0.0")
    asked: list[str] = []

    def current(model: str) -> str | None:
        asked.append(model)
        return "1.0.1"

    source = FakeSource({("iris", "1.0.0", "accuracy"): Measurement(0.5, 100),
                         ("iris", "1.0.1", "accuracy"): Measurement(0.99, 100)})
    (_, event), = Evaluator(store, source, production=current, now=lambda: NOW).evaluate()
    assert event.version == "1.0.0" and asked == []
    assert [c[:3] for c in source.calls] == [("iris", "1.0.0", "accuracy")]


def test_the_cooldown_holds_across_passes(client: Client) -> None:
    store = client.alert_store
    _add(store, cooldown_s=3600)
    _add(store, "quiet", metric="f1", created_at=NOW - HOUR + MINUTE)  # never crosses
    source = FakeSource({("iris", "1.0.0", "accuracy"): Measurement(0.5, 100),
                         ("iris", "1.0.0", "f1"): Measurement(0.95, 100)})
    clock = Clock(NOW)
    evaluator = Evaluator(store, source, production=lambda m: "1.0.0", now=clock)
    fired_at = []
    for minutes in (0, 1, 30, 59, 60, 61, 119, 120):
        clock.now = NOW + minutes * MINUTE
        fired_at += [minutes for _ in evaluator.evaluate()]
    assert fired_at == [0, 60, 120]
    assert [e.at for e in store.events()] == [NOW + 120 * MINUTE, NOW + HOUR, NOW]
    # Within the cooldown the rule is not even measured; the quiet one is, every pass.
    assert [c[2] for c in source.calls].count("accuracy") == 3
    assert [c[2] for c in source.calls].count("f1") == 8


def test_two_evaluators_overlapping_fire_a_rule_once(client: Client) -> None:
    """The second evaluator read the rules before the first fired (a lease that just
    changed hands): the store's check under the row lock holds its firing back."""
    store = client.alert_store
    _add(store)
    answers = {("iris", "1.0.0", "accuracy"): Measurement(0.5, 100)}
    first = Evaluator(store, FakeSource(answers), production=lambda m: "1.0.0",
                      now=lambda: NOW)
    fired_by_first: list[object] = []
    second = Evaluator(store, FakeSource(answers,
                                         during=lambda: fired_by_first.extend(first.evaluate())),
                       production=lambda m: "1.0.0", now=lambda: NOW + MINUTE)
    assert second.evaluate() == []
    assert len(fired_by_first) == 1 and len(store.events()) == 1
    assert store.get("r1").last_fired_at == NOW


def test_a_rule_pinned_to_an_unknown_version_never_reaches_the_evaluator(
        client: Client) -> None:
    """The evaluator measures quality against the version's registered metrics, read from
    the registry (as the server wires it): a rule pinned to a version the model lacks
    would raise out of the whole pass, so such a rule is refused when added."""
    registry = client.registry
    profiles = ProfileStore(client.db)
    _traffic(profiles, "1.0.0", [0.01] * 5, errors=0)
    service = _service(client)
    good = service.add({"model": "iris", "version": "1.0.0", "metric": "requests",
                        "op": ">=", "threshold": 1, "min_samples": 1}, actor="a")
    with pytest.raises(NotFoundError):
        service.add({**BASE, "version": "9.9.9", "min_samples": 1}, actor="a")
    metrics = MonitorMetrics(
        predictions=client.predictions,
        drift=DriftService(profiles, references=lambda m, v: None, now=lambda: NOW),
        registered=lambda m, v: registry.get_version(m, v).metrics)
    fired = Evaluator(client.alert_store, metrics, production=lambda m: None,
                      now=lambda: NOW).evaluate()
    assert [(r.id, e.value, e.samples) for r, e in fired] == [(good.id, 5.0, 5)]


# --- MonitorMetrics on real stores ----------------------------------------------------------


def _log(store: PredictionLogStore, request_id: str, outputs: dict[str, Any],
         label: Any | None, *, minutes_ago: float = 5, version: str = "1.0.0") -> None:
    store.append([LogEntry(request_id, "iris", version, "stable",
                           NOW - dt.timedelta(minutes=minutes_ago),
                           len(outputs["predictions"]), "[]", orjson.dumps(outputs).decode())])
    if label is not None:
        store.record_feedback([Label(request_id, "iris", version,
                                     orjson.dumps(label).decode())], now=NOW)


def _measure(metrics: MonitorMetrics, metric: str, version: str = "1.0.0",
             window: dt.timedelta = HOUR) -> tuple[float | None, int]:
    m = metrics.measure("iris", version, metric, start=NOW - window, end=NOW)
    return m.value, m.samples


def test_quality_metrics_and_their_change_from_the_log_and_feedback(client: Client) -> None:
    log = client.predictions
    _log(log, "a", {"predictions": [0, 1, 1]}, [0, 1, 0])
    _log(log, "b", {"predictions": [2, 2, 1]}, [2, 1, 1])
    _log(log, "c", {"predictions": [1]}, None)  # no feedback: not a sample
    _log(log, "old", {"predictions": [0, 0]}, [1, 1], minutes_ago=90)  # before the window
    _log(log, "other", {"predictions": [0]}, [1], version="1.0.1")
    asked: list[tuple[str, str]] = []

    def registered(model: str, version: str) -> dict[str, float]:
        asked.append((model, version))
        return {"accuracy": 0.9}

    metrics = MonitorMetrics(predictions=log, drift=None, registered=registered)
    assert _measure(metrics, "accuracy") == (pytest.approx(4 / 6), 6)
    assert _measure(metrics, "accuracy_change") == (pytest.approx(4 / 6 - 0.9), 6)
    assert asked[-1] == ("iris", "1.0.0")
    f1, samples = _measure(metrics, "f1")
    assert f1 is not None and 0 < f1 < 1 and samples == 6
    assert _measure(metrics, "f1_change") == (None, 6)  # f1 was not registered
    assert _measure(metrics, "mae") == (None, 6)  # no regression metric of classes
    assert _measure(metrics, "roc_auc") == (None, 6)  # no probabilities logged
    assert _measure(metrics, "accuracy", version="1.0.1") == (0.0, 1)
    assert _measure(metrics, "accuracy", window=2 * HOUR) == (pytest.approx(4 / 8), 8)
    assert _measure(metrics, "accuracy", version="2.0.0") == (None, 0)
    # Without a prediction log or live profiles there is nothing to measure.
    nothing = MonitorMetrics(predictions=None, drift=None, registered=registered)
    for metric in ("accuracy", "drift_share", "requests"):
        assert _measure(nothing, metric) == (None, 0)


def test_regression_quality_metrics(client: Client) -> None:
    log = client.predictions
    _log(log, "a", {"predictions": [1.5, 2.0]}, [1.0, 2.5])
    _log(log, "b", {"predictions": [3.0]}, [3.0])
    metrics = MonitorMetrics(predictions=log, drift=None,
                             registered=lambda m, v: {"mae": 0.5, "rmse": 0.1})
    assert _measure(metrics, "mae") == (pytest.approx(1 / 3), 3)
    assert _measure(metrics, "mae_change") == (pytest.approx(1 / 3 - 0.5), 3)
    assert _measure(metrics, "rmse") == (pytest.approx((0.5 / 3) ** 0.5), 3)
    assert _measure(metrics, "accuracy") == (None, 3)


def _write(profiles: ProfileStore, version: str, vector: np.ndarray, *, digest: str,
           minutes_ago: int = 10, worker: str = "w1") -> None:
    """One worker's minute window and, as a worker writes it too, its hour window (this
    being the worker's only traffic in that hour)."""
    start = NOW - minutes_ago * MINUTE
    profiles.write_windows([WindowCounts(
        model="iris", version=version, width_s=width, start=start.replace(minute=0)
        if width == HOUR_S else start, worker=worker, digest=digest,
        counts=vector.astype("<f8").tobytes()) for width in (MINUTE_S, HOUR_S)])


def _traffic(profiles: ProfileStore, version: str, latencies: list[float], *, errors: int,
             minutes_ago: int = 10, worker: str = "w1") -> None:
    layout = Layout(None)
    vector = layout.empty()
    layout.add_requests(vector, latencies_s=np.asarray(latencies), errors=errors,
                        rows=len(latencies))
    _write(profiles, version, vector, digest=layout.digest, minutes_ago=minutes_ago,
           worker=worker)


def test_traffic_metrics_from_the_live_profiles(client: Client) -> None:
    profiles = ProfileStore(client.db)
    _traffic(profiles, "1.0.0", [0.001, 0.002, 0.003], errors=1, worker="w1")
    _traffic(profiles, "1.0.0", [0.5], errors=0, minutes_ago=40, worker="w2")
    _traffic(profiles, "1.0.0", [9.0] * 10, errors=10, minutes_ago=70)  # before the window
    _traffic(profiles, "1.0.1", [9.0] * 10, errors=10)  # another version
    drift = DriftService(profiles, references=lambda m, v: None, now=lambda: NOW)
    metrics = MonitorMetrics(predictions=None, drift=drift, registered=lambda m, v: {})
    assert _measure(metrics, "requests") == (4.0, 4)
    assert _measure(metrics, "error_rate") == (0.25, 4)
    mean, samples = _measure(metrics, "latency_mean_ms")
    assert mean == pytest.approx((0.001 + 0.002 + 0.003 + 0.5) / 4 * 1000) and samples == 4
    # p99 of the four: 0.5 s, estimated within its histogram bin (interpolated
    # geometrically: 96% of the way up, as 3.96 of the 4 requests are below it).
    low = max(e for e in prof.LATENCY_EDGES_S if e <= 0.5)
    edge = min(e for e in prof.LATENCY_EDGES_S if e > 0.5)
    p99, samples = _measure(metrics, "latency_p99_ms")
    assert samples == 4 and p99 == pytest.approx(low * (edge / low) ** 0.96 * 1000)
    assert 500 < edge * 1000 <= 500 * 10 ** 0.1 + 1e-6  # 10 bins per factor of ten
    assert _measure(metrics, "error_rate", version="1.0.1") == (1.0, 10)
    assert _measure(metrics, "requests", version="2.0.0") == (None, 0)
    recent, samples = _measure(metrics, "latency_p99_ms", window=30 * MINUTE)
    assert samples == 3 and 3 <= recent <= min(
        e for e in prof.LATENCY_EDGES_S if e > 0.003) * 1000


def _reference(seed: int = 0) -> tuple[Reference, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    data = {"x": rng.normal(0.0, 1.0, 500), "y": rng.normal(5.0, 2.0, 500)}
    return build_reference(data), data


def test_drift_metrics_from_the_live_profiles(client: Client) -> None:
    profiles = ProfileStore(client.db)
    reference, data = _reference()
    stored = StoredReference(model="iris", version="1.0.0", digest=reference.digest,
                             source="train.csv", rows=reference.rows,
                             profile=reference.to_dict(), created_at=NOW - 48 * HOUR)
    layout = Layout(reference)

    def live(columns: dict[str, np.ndarray], version: str) -> None:
        vector = layout.empty()
        rows = len(next(iter(columns.values())))
        layout.add_requests(vector, latencies_s=np.full(rows, 0.01), errors=0, rows=rows)
        layout.add_rows(vector, columns)
        _write(profiles, version, vector, digest=layout.digest)

    live({"x": data["x"][:300] + 3.0, "y": data["y"][:300]}, "1.0.0")  # x drifts
    live({"x": data["x"], "y": data["y"]}, "1.0.1")  # the reference data itself
    references = {("iris", "1.0.0"): stored,
                  ("iris", "1.0.1"): dataclasses.replace(stored, version="1.0.1")}
    drift = DriftService(profiles, references=lambda m, v: references.get((m, v)),
                         now=lambda: NOW)
    metrics = MonitorMetrics(predictions=None, drift=drift, registered=lambda m, v: {})
    assert _measure(metrics, "drift_share") == (0.5, 300)  # one column of two
    assert _measure(metrics, "dataset_drift") == (1.0, 300)  # at least half: drift
    assert _measure(metrics, "drift_share", version="1.0.1") == (0.0, 500)
    assert _measure(metrics, "dataset_drift", version="1.0.1") == (0.0, 500)
    assert _measure(metrics, "requests") == (300.0, 300)  # traffic counts all the same
    # A version without a reference has no drift to measure.
    references.pop(("iris", "1.0.1"))
    assert _measure(metrics, "drift_share", version="1.0.1") == (None, 0)
    assert _measure(metrics, "dataset_drift", version="1.0.1") == (None, 0)


def test_every_metric_is_measured_by_some_source(client: Client) -> None:
    """No metric a rule may name falls through to a wrong source: each answers (None, 0)
    with nothing logged, and the quality ones reach the prediction log."""
    profiles = ProfileStore(client.db)
    metrics = MonitorMetrics(
        predictions=client.predictions,
        drift=DriftService(profiles, references=lambda m, v: None, now=lambda: NOW),
        registered=lambda m, v: {})
    for metric in METRICS:
        assert _measure(metrics, metric) == (None, 0), metric


# --- describe and the dictionaries ----------------------------------------------------------


def _event(value: float = 2 / 3, *, samples: int = 60) -> AlertEvent:
    return AlertEvent(id=7, rule_id="r1", model="iris", version="1.0.1", metric="accuracy",
                      value=value, op="<", threshold=0.8, samples=samples, action="rollback",
                      status="pending", outcome="rollback pending", at=NOW,
                      updated_at=NOW + MINUTE)


def _plain_rule(window_s: int = 3600) -> AlertRule:
    return AlertRule(id="r1", model="iris", version=None, metric="accuracy", op="<",
                     threshold=0.8, window_s=window_s, min_samples=50, cooldown_s=3600,
                     action="rollback", options={}, created_at=NOW, created_by="t")


def test_describe_says_why_a_rule_fired() -> None:
    assert describe(_plain_rule(), _event()) == (
        "alert r1: accuracy of iris 1.0.1 was 0.6667 < 0.8 over the last 1h (60 samples)")
    assert describe(_plain_rule(90), _event(1234567.0, samples=1)) == (
        "alert r1: accuracy of iris 1.0.1 was 1.235e+06 < 0.8 over the last 90s (1 samples)")
    assert describe(_plain_rule(604800), _event(math.inf)).endswith(
        "was nan < 0.8 over the last 1w (60 samples)")


@pytest.mark.parametrize(("seconds", "text"), [
    (30, "30s"), (60, "1m"), (90, "90s"), (5400, "90m"), (3600, "1h"), (86400, "1d"),
    (172800, "2d"), (604800, "1w"), (1209600, "2w"), (90000, "25h")])
def test_duration_text(seconds: int, text: str) -> None:
    assert duration_text(seconds) == text


def test_event_dict() -> None:
    assert event_dict(_event()) == {
        "id": 7, "rule_id": "r1", "model": "iris", "version": "1.0.1", "metric": "accuracy",
        "value": 2 / 3, "op": "<", "threshold": 0.8, "samples": 60, "action": "rollback",
        "status": "pending", "outcome": "rollback pending", "at": NOW.isoformat(),
        "updated_at": (NOW + MINUTE).isoformat()}
    assert orjson.loads(orjson.dumps(event_dict(_event()))) == event_dict(_event())
    fired = rule_dict(dataclasses.replace(_plain_rule(), last_fired_at=NOW))
    assert fired["last_fired_at"] == NOW.isoformat() and fired["version"] is None


def test_health_measures_drift_and_every_quality_metric_at_once(client: Client) -> None:
    profiles = ProfileStore(client.db)
    reference, data = _reference()
    stored = StoredReference(model="iris", version="1.0.0", digest=reference.digest,
                             source="train.csv", rows=reference.rows,
                             profile=reference.to_dict(), created_at=NOW - 48 * HOUR)
    layout = Layout(reference)
    vector = layout.empty()
    layout.add_requests(vector, latencies_s=np.full(300, 0.01), errors=0, rows=300)
    layout.add_rows(vector, {"x": data["x"][:300] + 3.0, "y": data["y"][:300]})
    _write(profiles, "1.0.0", vector, digest=layout.digest)
    log = client.predictions
    _log(log, "a", {"predictions": [0, 1, 1]}, [0, 1, 0])
    drift = DriftService(profiles, references=lambda m, v: stored if v == "1.0.0" else None,
                         now=lambda: NOW)
    metrics = MonitorMetrics(predictions=log, drift=drift,
                             registered=lambda m, v: {"accuracy": 0.9, "loss": 0.1})
    health = metrics.health("iris", "1.0.0", start=NOW - HOUR, end=NOW)
    assert (health.drift_share, health.dataset_drift, health.profiled) == (0.5, True, 300)
    assert health.labelled == 3
    assert health.quality["accuracy"] == pytest.approx(2 / 3)
    assert "roc_auc" not in health.quality  # not computable: left out, not None
    assert health.change == {"accuracy": pytest.approx(2 / 3 - 0.9)}
    # The same numbers as the alert rules measure, one by one.
    for metric, value in (("drift_share", 0.5), ("accuracy", 2 / 3), ("f1",
                                                                     health.quality["f1"])):
        assert _measure(metrics, metric)[0] == pytest.approx(value)
    # Nothing to measure: no reference, no feedback.
    assert metrics.health("iris", "1.0.1", start=NOW - HOUR, end=NOW) == Health(
        "iris", "1.0.1")
    nothing = MonitorMetrics(predictions=None, drift=None, registered=lambda m, v: {})
    assert nothing.health("iris", "1.0.0", start=NOW - HOUR, end=NOW) == Health(
        "iris", "1.0.0")
