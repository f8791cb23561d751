"""Alert rules, their events, and the lease that lets one process evaluate them.

A firing is stored in one transaction with the rule's ``last_fired_at`` and an audit
entry, and only if the rule's cooldown has passed by then (checked under the rule's row
lock), so two evaluators that overlap (a lease that just changed hands) cannot fire a
rule twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from modelhost._utils import as_utc, utcnow
from modelhost.errors import NotFoundError
from modelhost.store import audit
from modelhost.store.database import Database, insert_for
from modelhost.store.schema import AlertEventRow, AlertRuleRow, LeaseRow


class AlertRuleNotFoundError(NotFoundError):
    def __init__(self, rule_id: str) -> None:
        super().__init__(f"alert rule {rule_id!r} not found; see GET /v1/alerts")
        self.cli_message = f"alert rule {rule_id!r} not found; see 'modelhost alerts list'"


@dataclass(frozen=True)
class AlertRule:
    id: str
    model: str
    version: str | None  # None: whichever version is in production
    metric: str
    op: str
    threshold: float
    window_s: int
    min_samples: int
    cooldown_s: int
    action: str
    options: Mapping[str, Any]
    created_at: dt.datetime
    created_by: str
    last_fired_at: dt.datetime | None = None


@dataclass(frozen=True)
class AlertEvent:
    id: int
    rule_id: str
    model: str
    version: str
    metric: str
    value: float
    op: str
    threshold: float
    samples: int
    action: str
    status: str  # pending | done | failed
    outcome: str
    at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class Firing:
    """What an evaluation found, to store as an event."""

    rule_id: str
    model: str
    version: str
    value: float
    samples: int


class AlertStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, rule: AlertRule) -> AlertRule:
        with self._db.session(write=True) as s:
            s.add(AlertRuleRow(
                id=rule.id, model=rule.model, version=rule.version, metric=rule.metric,
                op=rule.op, threshold=rule.threshold, window_s=rule.window_s,
                min_samples=rule.min_samples, cooldown_s=rule.cooldown_s,
                action=rule.action, options=dict(rule.options), created_at=rule.created_at,
                created_by=rule.created_by, last_fired_at=None))
            s.flush()
            audit.append(s, "alert.add", f"alert:{rule.id}", after=_describe(rule))
        return rule

    def rules(self, model: str | None = None) -> list[AlertRule]:
        q = select(AlertRuleRow).order_by(AlertRuleRow.created_at, AlertRuleRow.id)
        if model is not None:
            q = q.where(AlertRuleRow.model == model)
        with self._db.session() as s:
            return [_rule(r) for r in s.scalars(q)]

    def get(self, rule_id: str) -> AlertRule:
        with self._db.session() as s:
            row = s.get(AlertRuleRow, rule_id)
            if row is None:
                raise AlertRuleNotFoundError(rule_id)
            return _rule(row)

    def remove(self, rule_id: str) -> None:
        with self._db.session(write=True) as s:
            row = s.get(AlertRuleRow, rule_id)
            if row is None:
                raise AlertRuleNotFoundError(rule_id)
            before = _describe(_rule(row))
            s.delete(row)
            s.flush()
            audit.append(s, "alert.remove", f"alert:{rule_id}", before=before)

    def fire(self, firing: Firing, *, now: dt.datetime, outcome: str) -> AlertEvent | None:
        """Store a firing as a pending event, unless the rule is gone or fired within its
        cooldown meanwhile (then None); audited as ``alert.fire``."""
        with self._db.session(write=True) as s:
            row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.id == firing.rule_id)
                           .with_for_update())
            if row is None:
                return None
            last = as_utc(row.last_fired_at) if row.last_fired_at is not None else None
            if last is not None and now - last < dt.timedelta(seconds=row.cooldown_s):
                return None
            row.last_fired_at = now
            event = AlertEventRow(
                rule_id=row.id, model=firing.model, version=firing.version,
                metric=row.metric, value=firing.value, op=row.op, threshold=row.threshold,
                samples=firing.samples, action=row.action, status="pending",
                outcome=outcome, at=now, updated_at=now)
            s.add(event)
            s.flush()
            audit.append(s, "alert.fire", f"alert:{row.id}", after={
                "event": event.id, "model": firing.model, "version": firing.version,
                "metric": row.metric, "value": firing.value, "op": row.op,
                "threshold": row.threshold, "samples": firing.samples,
                "action": row.action})
            return _event(event)

    def finish(self, event_id: int, *, status: str, outcome: str) -> None:
        """Record what an event's action did (``done`` or ``failed``)."""
        with self._db.session(write=True) as s:
            s.execute(update(AlertEventRow).where(AlertEventRow.id == event_id).values(
                status=status, outcome=outcome, updated_at=utcnow()))

    def events(self, *, model: str | None = None, rule_id: str | None = None,
               limit: int = 100) -> list[AlertEvent]:
        """The newest events first."""
        q = select(AlertEventRow).order_by(AlertEventRow.at.desc(),
                                           AlertEventRow.id.desc()).limit(limit)
        if model is not None:
            q = q.where(AlertEventRow.model == model)
        if rule_id is not None:
            q = q.where(AlertEventRow.rule_id == rule_id)
        with self._db.session() as s:
            return [_event(r) for r in s.scalars(q)]


class LeaseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def acquire(self, name: str, holder: str, *, ttl: dt.timedelta,
                now: dt.datetime) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; True if
        ``holder`` holds it now (it was free, expired, or already its own)."""
        expires = now + ttl
        t = LeaseRow
        with self._db.session(write=True) as s:
            s.execute(insert_for(s, LeaseRow).values(
                name=name, holder=holder, expires_at=expires).on_conflict_do_nothing(
                index_elements=["name"]))
            taken = s.execute(update(t).where(
                t.name == name, (t.holder == holder) | (t.expires_at < now)).values(
                holder=holder, expires_at=expires))
            return bool(taken.rowcount)  # type: ignore[attr-defined]

    def release(self, name: str, holder: str) -> None:
        with self._db.session(write=True) as s:
            s.execute(delete(LeaseRow).where(LeaseRow.name == name,
                                             LeaseRow.holder == holder))


def _describe(rule: AlertRule) -> dict[str, Any]:
    return {"model": rule.model, "version": rule.version, "metric": rule.metric,
            "op": rule.op, "threshold": rule.threshold, "window_s": rule.window_s,
            "min_samples": rule.min_samples, "cooldown_s": rule.cooldown_s,
            "action": rule.action, "options": public_options(rule.options)}


def public_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """An action's options as they may be shown and audited: a webhook URL without its
    credentials and query (where tokens usually are)."""
    shown = dict(options)
    url = shown.get("url")
    if isinstance(url, str):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address keeps its brackets
            host = f"[{host}]"
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # refused when added; never shown raw
            port = ""
        hidden = "?..." if parts.query else ""
        shown["url"] = f"{parts.scheme}://{host}{port}{parts.path}{hidden}"
    return shown


def _rule(r: AlertRuleRow) -> AlertRule:
    return AlertRule(id=r.id, model=r.model, version=r.version, metric=r.metric, op=r.op,
                     threshold=r.threshold, window_s=r.window_s, min_samples=r.min_samples,
                     cooldown_s=r.cooldown_s, action=r.action, options=dict(r.options),
                     created_at=as_utc(r.created_at), created_by=r.created_by,
                     last_fired_at=as_utc(r.last_fired_at) if r.last_fired_at else None)


def _event(r: AlertEventRow) -> AlertEvent:
    return AlertEvent(id=r.id, rule_id=r.rule_id, model=r.model, version=r.version,
                      metric=r.metric, value=r.value, op=r.op, threshold=r.threshold,
                      samples=r.samples, action=r.action, status=r.status,
                      outcome=r.outcome, at=as_utc(r.at), updated_at=as_utc(r.updated_at))
