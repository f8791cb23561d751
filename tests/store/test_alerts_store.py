"""AlertStore and LeaseStore on SQLite and PostgreSQL: rules added, listed, read and
removed (each audited, webhook URLs redacted); a firing stored only past the rule's
cooldown, checked under the rule's row lock so that two evaluators at once store one
event; events finished and listed newest first; the evaluator's lease taken, refused,
renewed, released and raced for."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, text

from modelhost._actor import acting_as
from modelhost.monitoring.alerts import rule_dict
from modelhost.store import Database
from modelhost.store.alerts import (
    AlertRule,
    AlertRuleNotFoundError,
    AlertStore,
    Firing,
    LeaseStore,
    public_options,
)
from modelhost.store.audit import AuditStore
from modelhost.store.schema import AlertRuleRow

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
SECRET_URL = "https://bot:s3cr3t@hooks.example.com:8443/services/T01?token=xoxb-123#frag"
SHOWN_URL = "https://hooks.example.com:8443/services/T01?..."

R = TypeVar("R")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def alerts(db: Database) -> AlertStore:
    return AlertStore(db)


@pytest.fixture
def leases(db: Database) -> LeaseStore:
    return LeaseStore(db)


def _rule(rule_id: str = "r1", *, model: str = "iris", action: str = "log",
          options: dict[str, Any] | None = None, cooldown_s: int = 3600,
          created_at: dt.datetime = T0, version: str | None = None) -> AlertRule:
    return AlertRule(id=rule_id, model=model, version=version, metric="accuracy", op="<",
                     threshold=0.8, window_s=3600, min_samples=50, cooldown_s=cooldown_s,
                     action=action, options=options or {}, created_at=created_at,
                     created_by="cli:alice")


def _firing(rule_id: str = "r1", *, model: str = "iris", value: float = 0.5,
            samples: int = 60) -> Firing:
    return Firing(rule_id=rule_id, model=model, version="1.0.1", value=value,
                  samples=samples)


# --- rules ----------------------------------------------------------------------------------


def test_rules_are_added_listed_read_and_removed_each_audited(db: Database,
                                                              alerts: AlertStore) -> None:
    hook = _rule("hook", action="webhook", options={"url": SECRET_URL})
    other = _rule("other", model="churn", created_at=T0 + SECOND, version="2.0.0")
    with acting_as("cli:alice"):
        assert alerts.add(hook) == hook
        alerts.add(other)
    assert alerts.rules() == [hook, other]  # oldest first; read back exactly as given
    assert alerts.rules("churn") == [other]
    assert alerts.rules("nope") == []
    assert alerts.get("hook") == hook
    assert alerts.get("hook").options == {"url": SECRET_URL}  # the action needs it whole
    assert alerts.get("other").last_fired_at is None

    audit = AuditStore(db)
    added = list(reversed(audit.list(action="alert.add")))
    assert [(e.target, e.actor, e.before) for e in added] == [
        ("alert:hook", "cli:alice", None), ("alert:other", "cli:alice", None)]
    assert added[0].after == {
        "model": "iris", "version": None, "metric": "accuracy", "op": "<",
        "threshold": 0.8, "window_s": 3600, "min_samples": 50, "cooldown_s": 3600,
        "action": "webhook", "options": {"url": SHOWN_URL}}
    assert added[1].after is not None and added[1].after["version"] == "2.0.0"
    # The listing shows the URL as the audit log does: no credentials, no query.
    shown = rule_dict(alerts.get("hook"))
    assert shown["url"] == SHOWN_URL and shown["created_at"] == T0.isoformat()

    with acting_as("key:ab12 (ops)"):
        alerts.remove("hook")
    with pytest.raises(AlertRuleNotFoundError) as caught:
        alerts.get("hook")
    assert caught.value.code == "not_found"
    assert str(caught.value) == "alert rule 'hook' not found; see GET /v1/alerts"
    assert caught.value.cli_message == ("alert rule 'hook' not found; see 'modelhost alerts "
                                        "list'")
    assert alerts.rules() == [other]
    removed = audit.list(action="alert.remove")
    assert len(removed) == 1
    assert (removed[0].target, removed[0].actor, removed[0].after) == (
        "alert:hook", "key:ab12 (ops)", None)
    assert removed[0].before == added[0].after
    entries = audit.verify().entries
    with pytest.raises(AlertRuleNotFoundError):
        alerts.remove("hook")  # gone: refused, and nothing audited
    assert audit.verify().entries == entries and audit.verify().ok
    # No secret of the webhook anywhere in the audit log.
    logged = json.dumps([e.to_dict() for e in audit.list(limit=1000)])
    assert "s3cr3t" not in logged and "xoxb" not in logged and "bot:" not in logged


@pytest.mark.parametrize(("options", "shown"), [
    ({"url": "http://hooks.example.com/alert"}, {"url": "http://hooks.example.com/alert"}),
    ({"url": SECRET_URL}, {"url": SHOWN_URL}),
    ({"url": "https://user@example.com/x?a=1&b=2"}, {"url": "https://example.com/x?..."}),
    ({"url": "https://:pw@example.com:9000"}, {"url": "https://example.com:9000"}),
    ({"spec": "retrain/modelhost.yaml"}, {"spec": "retrain/modelhost.yaml"}),
    ({}, {}),
])
def test_public_options_hide_credentials_and_query(options: dict[str, Any],
                                                   shown: dict[str, Any]) -> None:
    assert public_options(options) == shown
    assert public_options(options) is not options


def test_public_options_keep_an_ipv6_host_readable() -> None:
    assert public_options({"url": "http://[::1]:8080/hook?t=1"}) == {
        "url": "http://[::1]:8080/hook?..."}


# --- firing ---------------------------------------------------------------------------------


def test_a_firing_is_stored_once_per_cooldown_and_audited(db: Database,
                                                          alerts: AlertStore) -> None:
    alerts.add(_rule(cooldown_s=3600))
    audit = AuditStore(db)
    with acting_as("alerts"):
        first = alerts.fire(_firing(value=0.5, samples=60), now=T0, outcome="log pending")
    assert first is not None
    assert (first.rule_id, first.model, first.version, first.metric, first.value, first.op,
            first.threshold, first.samples, first.action, first.status, first.outcome,
            first.at, first.updated_at) == (
        "r1", "iris", "1.0.1", "accuracy", 0.5, "<", 0.8, 60, "log", "pending",
        "log pending", T0, T0)
    assert alerts.get("r1").last_fired_at == T0
    assert alerts.events() == [first]
    fired = audit.list(action="alert.fire")
    assert len(fired) == 1 and (fired[0].target, fired[0].actor) == ("alert:r1", "alerts")
    assert fired[0].after == {"event": first.id, "model": "iris", "version": "1.0.1",
                              "metric": "accuracy", "value": 0.5, "op": "<",
                              "threshold": 0.8, "samples": 60, "action": "log"}

    # Within the cooldown: nothing stored, nothing audited, last_fired_at kept.
    entries = audit.verify().entries
    assert alerts.fire(_firing(value=0.4), now=T0 + HOUR - SECOND, outcome="x") is None
    assert alerts.events() == [first]
    assert alerts.get("r1").last_fired_at == T0
    assert audit.verify().entries == entries

    # Once the cooldown has passed (exactly), it fires again.
    second = alerts.fire(_firing(value=0.4), now=T0 + HOUR, outcome="log pending")
    assert second is not None and second.id != first.id and second.value == 0.4
    assert alerts.get("r1").last_fired_at == T0 + HOUR
    assert [e.id for e in alerts.events()] == [second.id, first.id]
    assert len(audit.list(action="alert.fire")) == 2 and audit.verify().ok


def test_a_removed_rule_does_not_fire(db: Database, alerts: AlertStore) -> None:
    alerts.add(_rule())
    alerts.remove("r1")
    entries = AuditStore(db).verify().entries
    assert alerts.fire(_firing(), now=T0, outcome="log pending") is None
    assert alerts.fire(_firing("never-was"), now=T0, outcome="log pending") is None
    assert alerts.events() == []
    assert AuditStore(db).verify().entries == entries


def _lock_waiters(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")) or 0)


@contextlib.contextmanager
def _held(db: Database, lock: Callable[[Any], object]) -> Iterator[None]:
    """Hold a write transaction that took ``lock`` until the block ends."""
    with db.session(write=True) as s:
        lock(s)
        yield


def _race(db: Database, lock: Callable[[Any], object], work: Callable[[], R]) -> list[R]:
    """Run ``work`` in two threads that both start while another transaction holds
    ``lock`` (the rule's row, the leases table; SQLite: its write lock), so both are
    queued on it when it is released: the two transactions really overlap."""
    barrier = threading.Barrier(3)
    results: list[R] = []
    errors: list[BaseException] = []

    def thread() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(work())
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    with _held(db, lock):
        barrier.wait(timeout=10)
        if db.dialect == "postgresql":
            deadline = time.monotonic() + 4
            while _lock_waiters(db) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _lock_waiters(db) == 2  # both are waiting for the held lock
        else:
            time.sleep(0.2)  # SQLite: both BEGIN IMMEDIATE wait on the busy timeout
    for t in threads:
        t.join(timeout=15)
    assert not errors, errors
    return results


def test_two_evaluators_firing_at_once_store_one_event(db: Database,
                                                       alerts: AlertStore) -> None:
    alerts.add(_rule(cooldown_s=3600))

    def lock_rule(s: Any) -> object:
        return s.scalar(select(AlertRuleRow).where(AlertRuleRow.id == "r1").with_for_update())

    results = _race(db, lock_rule,
                    lambda: alerts.fire(_firing(), now=T0, outcome="log pending"))
    stored = [r for r in results if r is not None]
    assert len(results) == 2 and len(stored) == 1
    assert alerts.events() == stored
    assert len(AuditStore(db).list(action="alert.fire")) == 1


def test_finish_records_what_the_action_did(alerts: AlertStore) -> None:
    alerts.add(_rule())
    alerts.add(_rule("r2", created_at=T0 + SECOND))
    event = alerts.fire(_firing(), now=T0, outcome="webhook pending")
    other = alerts.fire(_firing("r2"), now=T0, outcome="log pending")
    assert event is not None and other is not None
    before = dt.datetime.now(UTC)
    alerts.finish(event.id, status="failed", outcome="webhook failed after 3 attempts")
    done = {e.id: e for e in alerts.events()}
    assert (done[event.id].status, done[event.id].outcome) == (
        "failed", "webhook failed after 3 attempts")
    assert done[event.id].updated_at >= before - SECOND and done[event.id].at == T0
    assert done[other.id] == other  # the other event: untouched
    alerts.finish(10_000, status="done", outcome="nothing")  # no such event: no error
    assert {e.id: e for e in alerts.events()} == done


def test_events_newest_first_filtered_and_limited(alerts: AlertStore) -> None:
    alerts.add(_rule("a", cooldown_s=0))
    alerts.add(_rule("b", model="churn", cooldown_s=0, created_at=T0 + SECOND))
    fired = []
    for minutes, rule_id, model in [(0, "a", "iris"), (1, "b", "churn"), (2, "a", "iris"),
                                    (3, "b", "churn"), (3, "a", "iris")]:
        event = alerts.fire(_firing(rule_id, model=model),
                            now=T0 + dt.timedelta(minutes=minutes), outcome="log pending")
        assert event is not None  # a cooldown of 0 never holds a firing back
        fired.append(event)
    ids = [e.id for e in fired]
    # Newest first; the two firings of minute 3, the later stored first.
    assert [e.id for e in alerts.events()] == [ids[4], ids[3], ids[2], ids[1], ids[0]]
    assert [e.id for e in alerts.events(model="iris")] == [ids[4], ids[2], ids[0]]
    assert [e.id for e in alerts.events(rule_id="b")] == [ids[3], ids[1]]
    assert [e.id for e in alerts.events(model="iris", rule_id="b")] == []
    assert [e.id for e in alerts.events(limit=2)] == [ids[4], ids[3]]
    assert [e.id for e in alerts.events(model="churn", limit=1)] == [ids[3]]
    assert all(e.at.tzinfo is not None for e in alerts.events())


# --- the lease ------------------------------------------------------------------------------


def test_a_lease_is_taken_refused_renewed_and_released(leases: LeaseStore) -> None:
    ttl = dt.timedelta(seconds=30)
    assert leases.acquire("alerts", "a", ttl=ttl, now=T0)  # free: taken
    assert not leases.acquire("alerts", "b", ttl=ttl, now=T0 + 10 * SECOND)
    assert leases.acquire("other", "b", ttl=ttl, now=T0)  # another lease: its own row
    assert leases.acquire("alerts", "a", ttl=ttl, now=T0 + 20 * SECOND)  # renewed: T0+50s
    assert not leases.acquire("alerts", "b", ttl=ttl, now=T0 + 40 * SECOND)  # held still
    assert not leases.acquire("alerts", "b", ttl=ttl, now=T0 + 50 * SECOND)  # expires now
    assert leases.acquire("alerts", "b", ttl=ttl, now=T0 + 51 * SECOND)  # lapsed: taken
    assert not leases.acquire("alerts", "a", ttl=ttl, now=T0 + 52 * SECOND)
    leases.release("alerts", "a")  # not the holder: changes nothing
    assert not leases.acquire("alerts", "a", ttl=ttl, now=T0 + 53 * SECOND)
    leases.release("alerts", "b")
    assert leases.acquire("alerts", "a", ttl=ttl, now=T0 + 54 * SECOND)  # free again
    assert not leases.acquire("other", "a", ttl=ttl, now=T0 + 10 * SECOND)


def test_two_holders_racing_for_a_free_lease_get_one_true(db: Database,
                                                          leases: LeaseStore) -> None:
    holders = iter(["a", "b"])
    lock = threading.Lock()

    def acquire() -> tuple[str, bool]:
        with lock:
            holder = next(holders)
        return holder, leases.acquire("alerts", holder, ttl=dt.timedelta(seconds=30),
                                      now=T0)

    def lock_leases(s: Any) -> object:
        if db.dialect == "postgresql":  # inserts wait for it; SQLite: the write lock
            s.execute(text("LOCK TABLE leases IN EXCLUSIVE MODE"))
        return None

    results = _race(db, lock_leases, acquire)
    assert sorted(results) == [("a", False), ("b", True)] or sorted(results) == [
        ("a", True), ("b", False)]
    winner = next(h for h, held in results if held)
    loser = "b" if winner == "a" else "a"
    assert leases.acquire("alerts", winner, ttl=dt.timedelta(seconds=30), now=T0 + SECOND)
    assert not leases.acquire("alerts", loser, ttl=dt.timedelta(seconds=30), now=T0 + SECOND)
