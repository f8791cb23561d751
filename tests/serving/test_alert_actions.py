"""The actions of fired alerts (serving/alerting.py) with real parts: webhooks posted to
a local HTTP server (retried with backoff, timeouts, refused connections), rollbacks in
the registry, pipelines run as child processes; every outcome recorded on the event and
no action raising out of ActionRunner.run. And AlertLoop: of two processes, only the
lease holder evaluates, and the other takes over when the lease lapses."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelhost import Client
from modelhost.entities import Lineage, SemVer
from modelhost.errors import StoreUnavailableError
from modelhost.monitoring.alerts import (
    AlertService,
    Evaluator,
    Health,
    Measurement,
    describe,
    event_dict,
    resolver,
)
from modelhost.rollout.service import RolloutService
from modelhost.serving.alerting import ACTOR, LEASE, ActionRunner, AlertLoop
from modelhost.store import Database, ModelStore, NewVersion
from modelhost.store.alerts import AlertEvent, AlertRule, AlertStore, Firing, LeaseStore

pytestmark = pytest.mark.anyio

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)


# --- parts ----------------------------------------------------------------------------------


class SpyStore(AlertStore):
    """The real store, remembering every finish() (the pipeline's 'running' note too)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.finished: list[tuple[int, str, str]] = []

    def finish(self, event_id: int, *, status: str, outcome: str) -> None:
        self.finished.append((event_id, status, outcome))
        super().finish(event_id, status=status, outcome=outcome)


def _register(client: Client, version: str, name: str = "iris", *,
              production: bool = True) -> None:
    number = SemVer.parse(version)
    ModelStore(client.db).create_version(
        NewVersion(model=name, flavor="python", flavor_meta={}, artifact_digest="0" * 64,
                   artifact_size=1, signature=None, input_example=None, lineage=Lineage()),
        lambda latest: number)
    if production:
        client.registry.transition(name, version, "staging")
        client.registry.transition(name, version, "production")


@pytest.fixture
def client(sqlite_client: Client) -> Client:
    """iris 1.0.1 in production, 1.0.0 archived from production before it."""
    _register(sqlite_client, "1.0.0")
    _register(sqlite_client, "1.0.1")
    return sqlite_client


@pytest.fixture
def store(client: Client) -> SpyStore:
    return SpyStore(client.db)


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    """Two one-step pipelines: one that finishes, one whose step raises."""
    folder = tmp_path / "pipelines"
    for name, body in (("ok", "    return {}"),
                       ("bad", '    raise RuntimeError("boom on purpose")')):
        (folder / name).mkdir(parents=True)
        (folder / name / "steps.py").write_text(f"def step(ctx):\n{body}\n")
        (folder / name / f"{name}.yaml").write_text(
            f'name: {name}\nsteps:\n  step: {{call: "steps:step"}}\n')
    return folder


@pytest.fixture
def service(store: SpyStore, client: Client, pipelines: Path) -> AlertService:
    return AlertService(store, resolve=resolver(client.registry), pipelines_dir=pipelines)


def _runner(store: AlertStore, client: Client, service: AlertService, *,
            timeout_s: float = 2.0) -> ActionRunner:
    return ActionRunner(store, client.rollouts, service, webhook_timeout_s=timeout_s,
                        webhook_attempts=3, backoff_s=0.01)


def _fire(store: AlertStore, rule: AlertRule, *, version: str = "1.0.1",
          now: dt.datetime = T0) -> AlertEvent:
    event = store.fire(Firing(rule.id, rule.model, version, 0.5, 60), now=now,
                       outcome=f"{rule.action} pending")
    assert event is not None
    return event


def _stored(store: AlertStore, event: AlertEvent) -> tuple[str, str]:
    found = next(e for e in store.events() if e.id == event.id)
    return found.status, found.outcome


class Hook:
    """A real HTTP server on a free local port: answers POSTs with the statuses given,
    in turn (the last one again once they run out), and keeps what it was sent."""

    def __init__(self) -> None:
        self.statuses: list[int] = [200]
        self.requests: list[tuple[str, str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((self.path, self.headers["Content-Type"],
                                      json.loads(body)))
                status = hook.statuses.pop(0) if len(hook.statuses) > 1 \
                    else hook.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cr3t"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def _webhook_rule(service: AlertService, url: str) -> AlertRule:
    return service.add({"model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8,
                        "min_samples": 50, "action": "webhook", "url": url}, actor="t")


# --- webhooks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "status", "outcome", "posts"), [
    ([200], "done", "webhook answered 200 (attempt 1)", 1),
    ([204], "done", "webhook answered 204 (attempt 1)", 1),
    ([500, 200], "done", "webhook answered 200 (attempt 2)", 2),
    ([503, 429, 201], "done", "webhook answered 201 (attempt 3)", 3),
    ([500], "failed", "webhook failed after 3 attempts: answered 500", 3),
    ([302], "failed", "webhook failed after 3 attempts: answered 302", 3),  # not followed
    ([500, 500, 500, 200], "failed", "webhook failed after 3 attempts: answered 500", 3),
])
async def test_a_webhook_is_posted_and_retried(
        client: Client, store: SpyStore, service: AlertService, hook: Hook,
        statuses: list[int], status: str, outcome: str, posts: int) -> None:
    hook.statuses = list(statuses)
    rule = _webhook_rule(service, hook.url)
    event = _fire(store, rule)
    started = time.monotonic()
    assert await _runner(store, client, service).run(rule, event) == (status, outcome)
    elapsed = time.monotonic() - started
    assert _stored(store, event) == (status, outcome)
    assert store.finished == [(event.id, status, outcome)]
    expected = {"alert": describe(rule, event), "event": event_dict(event),
                "rule_id": rule.id}
    assert hook.requests == [("/hook?token=s3cr3t", "application/json", expected)] * posts
    assert expected["alert"] == (f"alert {rule.id}: accuracy of iris 1.0.1 was 0.5 < 0.8 "
                                 "over the last 1h (60 samples)")
    # Backoff between attempts: 0.01 s, then 0.02 s.
    assert elapsed >= [0, 0, 0.01, 0.03][posts] - 0.002


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_an_unreachable_webhook_fails_after_its_attempts(
        client: Client, store: SpyStore, service: AlertService) -> None:
    rule = _webhook_rule(service, f"http://127.0.0.1:{_closed_port()}/hook")
    event = _fire(store, rule)
    result = await _runner(store, client, service).run(rule, event)
    assert result == ("failed", "webhook failed after 3 attempts: ConnectError")
    assert _stored(store, event) == result


async def test_a_webhook_that_never_answers_times_out(client: Client, store: SpyStore,
                                                      service: AlertService) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        rule = _webhook_rule(service, f"http://127.0.0.1:{silent.getsockname()[1]}/hook")
        event = _fire(store, rule)
        started = time.monotonic()
        result = await _runner(store, client, service, timeout_s=0.1).run(rule, event)
        elapsed = time.monotonic() - started
    assert result == ("failed", "webhook failed after 3 attempts: ReadTimeout")
    assert _stored(store, event) == result
    assert 0.25 <= elapsed < 3  # three timeouts of 0.1 s and the backoff, no more


# --- rollback -------------------------------------------------------------------------------


def _rollback_rule(service: AlertService, model: str = "iris") -> AlertRule:
    return service.add({"model": model, "metric": "accuracy", "op": "<", "threshold": 0.8,
                        "action": "rollback", "cooldown": "1h"}, actor="t")


async def test_a_rollback_rolls_back_once(client: Client, store: SpyStore,
                                          service: AlertService) -> None:
    registry = client.registry
    rule = _rollback_rule(service)
    event = _fire(store, rule)
    runner = _runner(store, client, service)
    revision = registry.routing_revision()
    assert await runner.run(rule, event) == ("done", "rolled back iris from 1.0.1 to 1.0.0")
    assert _stored(store, event) == ("done", "rolled back iris from 1.0.1 to 1.0.0")
    assert registry.get_version("iris", "@production").version == "1.0.0"
    assert registry.get_version("iris", "1.0.1").stage.value == "archived"
    assert registry.routing_revision() == revision + 1
    why = describe(rule, event)
    # Through the rollout service, as `modelhost rollback` does: audited, and an event of
    # the deployment with the numbers the rule saw.
    (entry,) = client.audit.list(action="deployment.rollback")
    assert entry.actor == ACTOR
    assert (entry.after["state"], entry.after["stable"]) == ("rolled_back", "1.0.0")
    assert registry.stage_history("iris")[-1].reason == f"rollback: {why}"
    last = client.rollouts.events("iris")[-1]
    assert (last.kind, last.from_version, last.to_version, last.actor, last.reason) == (
        "rollback", "1.0.1", "1.0.0", ACTOR, why)
    assert last.numbers == {"metric": "accuracy", "value": 0.5, "op": "<",
                            "threshold": 0.8, "samples": 60}
    # The version rolled back from stays loaded for a while (a rollback can be undone).
    assert client.rollouts.status("iris").previous == "1.0.1"

    # The rule fires again for 1.0.1 (another evaluator, or after its cooldown): 1.0.1 is
    # no longer in production, so nothing is rolled back a second time.
    again = _fire(store, rule, now=T0 + HOUR)
    before = (registry.stage_history("iris"), registry.routing_revision(),
              client.audit.verify().entries, client.rollouts.events("iris"))
    result = await runner.run(rule, again)
    assert result == ("failed", "ConflictError: iris 1.0.1 is no longer in production "
                                "(1.0.0 is): not rolled back")
    assert _stored(store, again) == result
    assert _stored(store, event) == ("done", "rolled back iris from 1.0.1 to 1.0.0")
    assert (registry.stage_history("iris"), registry.routing_revision(),
            client.audit.verify().entries, client.rollouts.events("iris")) == before


async def test_a_rollback_during_a_canary_stops_the_candidate_it_measured(
        client: Client, store: SpyStore, service: AlertService) -> None:
    _register(client, "1.0.2", production=False)
    # (These versions have no artifact to load: the rollout starts unchecked.)
    RolloutService(client.deployments).deploy("iris", "1.0.2", "canary")
    rule = _rollback_rule(service)
    runner = _runner(store, client, service)

    # A firing about the stable version does not touch the rollout (rolling back its
    # candidate would not help the stable), and says what to do instead.
    on_stable = _fire(store, rule, version="1.0.1")
    before = (client.rollouts.status("iris"), client.audit.verify().entries)
    assert await runner.run(rule, on_stable) == (
        "failed", "ConflictError: iris 1.0.1 is the stable version of a canary of 1.0.2 "
                  "under way: not rolled back (promote or abort the rollout first)")
    assert (client.rollouts.status("iris"), client.audit.verify().entries) == before

    # A firing about the candidate stops its traffic; production stays where it was.
    on_candidate = _fire(store, rule, version="1.0.2", now=T0 + HOUR)
    assert await runner.run(rule, on_candidate) == (
        "done", "rolled back iris from 1.0.2 to 1.0.1")
    after = client.rollouts.status("iris")
    assert (after.state.value, after.stable, after.candidate, after.weights) == (
        "rolled_back", "1.0.1", None, {"1.0.1": 1.0})
    assert client.registry.get_version("iris", "@production").version == "1.0.1"
    last = client.rollouts.events("iris")[-1]
    assert (last.kind, last.from_version, last.to_version, last.actor) == (
        "rollback", "1.0.2", "1.0.1", ACTOR)

    # Fired again for 1.0.2: it no longer takes traffic, nothing more is done.
    again = _fire(store, rule, version="1.0.2", now=T0 + 2 * HOUR)
    assert await runner.run(rule, again) == (
        "failed", "ConflictError: iris 1.0.2 is no longer in production (1.0.1 is): "
                  "not rolled back")
    assert client.rollouts.status("iris") == after


async def test_a_rollback_with_nothing_to_roll_back_to_fails(
        client: Client, store: SpyStore, service: AlertService) -> None:
    _register(client, "1.0.0", name="solo")
    rule = _rollback_rule(service, "solo")
    event = _fire(store, rule, version="1.0.0")
    result = await _runner(store, client, service).run(rule, event)
    assert result == ("failed", "NothingToRollBackError: nothing to roll back for 'solo': "
                                "no version that was in production before 1.0.0 is "
                                "archived")
    assert _stored(store, event) == result
    assert client.registry.get_version("solo", "@production").version == "1.0.0"


# --- pipelines ------------------------------------------------------------------------------


async def test_pipelines_run_as_child_processes(
        client: Client, store: SpyStore, service: AlertService, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The child process reads its settings from the environment it inherits: the same
    # database and artifacts as this registry.
    monkeypatch.setenv("MODELHOST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELHOST_DB_URL", client.settings.resolved_db_url)
    monkeypatch.setenv("MODELHOST_ARTIFACTS", str(client.settings.resolved_artifacts))
    rules = [service.add({"model": "iris", "metric": "requests", "op": ">",
                          "threshold": 1000, "action": "pipeline", "spec": spec}, actor="t")
             for spec in ("ok/ok.yaml", "bad/bad.yaml")]
    events = [_fire(store, rule) for rule in rules]
    runner = _runner(store, client, service)
    results = await asyncio.gather(*(runner.run(r, e) for r, e in zip(rules, events,
                                                                        strict=True)))
    assert results == [
        ("done", "pipeline ok.yaml finished (exit 0)"),
        ("failed", "pipeline bad.yaml exited with 1: error: step 'step' failed: "
                   "RuntimeError: boom on purpose")]
    for event, result in zip(events, results, strict=True):
        assert _stored(store, event) == result
        running, final = [(s, o) for i, s, o in store.finished if i == event.id]
        assert final == result
        name = "ok.yaml" if event == events[0] else "bad.yaml"
        status, outcome = running
        pid = outcome.removeprefix(f"pipeline {name} running (pid ").removesuffix(")")
        assert status == "pending" and pid.isdigit() and int(pid) > 0
    # The run landed in the same tracking store, with the alert as its reason.
    (run,) = client.tracking.list_runs("ok")
    assert run.tags["pipeline.reason"] == describe(rules[0], events[0])


async def test_a_pipeline_gone_from_the_folder_fails_without_a_process(
        client: Client, store: SpyStore, service: AlertService, pipelines: Path) -> None:
    rule = service.add({"model": "iris", "metric": "requests", "op": ">", "threshold": 1,
                        "action": "pipeline", "spec": "ok/ok.yaml"}, actor="t")
    (pipelines / "ok" / "ok.yaml").unlink()  # checked again when the rule fires
    event = _fire(store, rule)
    result = await _runner(store, client, service).run(rule, event)
    assert result == ("failed", "InvalidInputError: pipeline 'ok/ok.yaml' is not a pipeline "
                                "file (or a folder with modelhost.yaml) in the pipelines "
                                "folder")
    assert store.finished == [(event.id, *result)]  # never 'running'


# --- failing actions never raise ------------------------------------------------------------


def _raw_rule(store: AlertStore, action: str, options: dict[str, Any],
              model: str = "iris") -> AlertRule:
    """A rule as the store holds it, past the service's checks (an older server's rule,
    a hand-edited row)."""
    return store.add(AlertRule(
        id=f"raw-{action}", model=model, version=None, metric="accuracy", op="<",
        threshold=0.8, window_s=3600, min_samples=1, cooldown_s=3600, action=action,
        options=options, created_at=T0, created_by="t"))


@pytest.mark.parametrize(("action", "options", "model", "outcome"), [
    ("webhook", {}, "iris", "KeyError: 'url'"),
    ("webhook", {"url": "not a url"}, "iris",
     "webhook failed after 3 attempts: UnsupportedProtocol"),
    ("rollback", {}, "ghost", "ModelNotFoundError: model 'ghost' not found; see GET "
                              "/v1/models"),
    ("pipeline", {"spec": "../../etc/passwd"}, "iris",
     "InvalidInputError: pipeline '../../etc/passwd' is outside the pipelines folder"),
])
async def test_an_action_that_raises_is_recorded_as_failed(
        client: Client, store: SpyStore, service: AlertService, action: str,
        options: dict[str, Any], model: str, outcome: str) -> None:
    rule = _raw_rule(store, action, options, model)
    event = _fire(store, rule)
    assert await _runner(store, client, service).run(rule, event) == ("failed", outcome)
    assert _stored(store, event) == ("failed", outcome)
    assert client.registry.get_version("iris", "@production").version == "1.0.1"


class DownStore(SpyStore):
    """The database went away after the rule fired: recording the outcome fails."""

    def finish(self, event_id: int, *, status: str, outcome: str) -> None:
        self.finished.append((event_id, status, outcome))
        raise StoreUnavailableError("the metadata database", "connection refused")


async def test_an_outcome_that_cannot_be_recorded_does_not_raise(
        client: Client, service: AlertService) -> None:
    store = DownStore(client.db)
    rule = service.add({"model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8},
                       actor="t")
    event = _fire(store, rule)
    assert await _runner(store, client, service).run(rule, event) == ("done", "logged")
    assert store.finished == [(event.id, "done", "logged")]


async def test_a_log_action_logs_a_warning(client: Client, store: SpyStore,
                                           service: AlertService,
                                           caplog: pytest.LogCaptureFixture) -> None:
    rule = service.add({"model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8},
                       actor="t")
    event = _fire(store, rule)
    with caplog.at_level(logging.WARNING, logger="modelhost.serving.alerting"):
        assert await _runner(store, client, service).run(rule, event) == ("done", "logged")
    assert [r.getMessage() for r in caplog.records] == [describe(rule, event)]
    assert _stored(store, event) == ("done", "logged")


# --- the loop and its lease -----------------------------------------------------------------


class Source:
    def measure(self, model: str, version: str, metric: str, *, start: dt.datetime,
                end: dt.datetime) -> Measurement:
        return Measurement(0.5, 100)


class CountingEvaluator(Evaluator):
    """The real evaluator, counting its passes (and failing the first ones if told)."""

    def __init__(self, store: AlertStore, *, now: Any, fail_first: int = 0) -> None:
        super().__init__(store, Source(), production=lambda m: "1.0.1", now=now)
        self.passes = 0
        self._fail = fail_first

    def evaluate(self) -> list[tuple[AlertRule, AlertEvent]]:
        self.passes += 1
        if self.passes <= self._fail:
            raise RuntimeError("the database is down")
        return super().evaluate()


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _loop(store: AlertStore, rollouts: RolloutService, service: AlertService,
          leases: LeaseStore, clock: Clock, *, interval_s: float = 30.0,
          fail_first: int = 0) -> tuple[AlertLoop, CountingEvaluator]:
    evaluator = CountingEvaluator(store, now=clock, fail_first=fail_first)
    runner = ActionRunner(store, rollouts, service, backoff_s=0.01)
    return AlertLoop(evaluator, runner, leases, interval_s=interval_s, now=clock), evaluator


async def test_only_the_lease_holder_evaluates_and_another_takes_over(
        client: Client, store: SpyStore, service: AlertService) -> None:
    leases = LeaseStore(client.db)
    clock = Clock(T0)
    a, counted_a = _loop(store, client.rollouts, service, leases, clock)
    b, counted_b = _loop(store, client.rollouts, service, leases, clock)
    assert a.holder != b.holder

    async def both() -> tuple[int, int]:
        await a.evaluate_once()
        await b.evaluate_once()
        return counted_a.passes, counted_b.passes

    # interval 30 s: the lease lasts 90 s from each renewal.
    assert await both() == (1, 0)  # a took the free lease
    clock.now = T0 + 60 * SECOND
    assert await both() == (2, 0)  # a renewed it (until T0 + 150 s)
    clock.now = T0 + 100 * SECOND
    assert await b.evaluate_once() == [] and counted_b.passes == 0  # still a's
    clock.now = T0 + 151 * SECOND  # a stopped renewing (a dead process): lapsed
    assert await b.evaluate_once() == [] and counted_b.passes == 1
    assert await a.evaluate_once() == [] and counted_a.passes == 2  # b's now
    await b.stop()  # a stopping process releases it at once
    assert await a.evaluate_once() == [] and counted_a.passes == 3
    await a.stop()
    assert leases.acquire(LEASE, "someone", ttl=SECOND * 10, now=clock.now)


async def test_a_short_interval_still_holds_the_lease_ten_seconds(
        client: Client, store: SpyStore, service: AlertService) -> None:
    leases = LeaseStore(client.db)
    clock = Clock(T0)
    a, counted_a = _loop(store, client.rollouts, service, leases, clock, interval_s=1.0)
    b, counted_b = _loop(store, client.rollouts, service, leases, clock, interval_s=1.0)
    await a.evaluate_once()
    clock.now = T0 + 10 * SECOND  # three intervals are 3 s; the lease lasts 10 s
    await b.evaluate_once()
    assert (counted_a.passes, counted_b.passes) == (1, 0)
    clock.now = T0 + 11 * SECOND
    await b.evaluate_once()
    assert (counted_a.passes, counted_b.passes) == (1, 1)


async def test_a_pass_starts_the_actions_without_waiting_for_them(
        client: Client, store: SpyStore, service: AlertService) -> None:
    rule = service.add({"model": "iris", "metric": "accuracy", "op": "<", "threshold": 0.8},
                       actor="t")
    clock = Clock(T0)
    loop, _ = _loop(store, client.rollouts, service, LeaseStore(client.db), clock)
    fired = await loop.evaluate_once()
    assert [(r.id, e.status) for r, e in fired] == [(rule.id, "pending")]
    (_, event), = fired
    assert _stored(store, event) == ("pending", "log pending")  # started, not awaited
    for _ in range(200):
        if _stored(store, event)[0] != "pending":
            break
        await asyncio.sleep(0.01)
    assert _stored(store, event) == ("done", "logged")
    (fire,) = client.audit.list(action="alert.fire")
    assert fire.actor == ACTOR
    await loop.stop()


async def test_the_loop_outlives_a_failed_pass(client: Client, store: SpyStore,
                                               service: AlertService,
                                               caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(T0)
    loop, counted = _loop(store, client.rollouts, service, LeaseStore(client.db), clock,
                          interval_s=0.01, fail_first=1)
    with caplog.at_level(logging.ERROR, logger="modelhost.serving.alerting"):
        loop.start()
        for _ in range(500):
            if counted.passes >= 3:
                break
            await asyncio.sleep(0.01)
        await loop.stop()
    assert counted.passes >= 3  # the first pass failed; the loop went on
    assert [r.getMessage() for r in caplog.records] == ["alert evaluation failed"]
    # Stopped: the lease is released for the next process.
    assert LeaseStore(client.db).acquire(LEASE, "next", ttl=SECOND * 10, now=clock.now)


async def test_the_lease_holder_publishes_the_health_of_the_served_versions(
        client: Client, store: SpyStore, service: AlertService,
        caplog: pytest.LogCaptureFixture) -> None:
    leases = LeaseStore(client.db)
    clock = Clock(T0)
    published: dict[str, list[Any]] = {"a": [], "b": []}
    measured_at: list[dt.datetime] = []
    fail = [False]

    def health(now: dt.datetime) -> list[Health]:
        measured_at.append(now)
        if fail[0]:
            raise RuntimeError("the database is down")
        return [Health("iris", "1.0.0", drift_share=0.25, dataset_drift=False, profiled=9)]

    def loop(name: str) -> AlertLoop:
        evaluator = CountingEvaluator(store, now=clock)
        return AlertLoop(evaluator, ActionRunner(store, client.rollouts, service), leases,
                         interval_s=30.0, now=clock, health=health,
                         publish=published[name].append)

    a, b = loop("a"), loop("b")
    await a.evaluate_once()
    await b.evaluate_once()
    assert published == {"a": [[Health("iris", "1.0.0", drift_share=0.25,
                                       dataset_drift=False, profiled=9)]],
                         "b": [None]}  # b holds no lease: it exports nothing
    assert measured_at == [T0]
    # A failed measurement is logged; the gauges keep their last numbers.
    fail[0] = True
    with caplog.at_level(logging.ERROR, logger="modelhost.serving.alerting"):
        assert await a.evaluate_once() == []
    assert len(published["a"]) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "measuring the served versions' health failed"]
    await a.stop()
    await b.stop()
