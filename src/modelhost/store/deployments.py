"""Deployments: each change in one transaction with the model row locked.

The rollout service decides (``decide``, a pure function of the deployment and the
model's versions); this store reads what it needs under the model's row lock, applies
the decision (the deployment row, its events, the stages it moves, an audit entry, the
routing revision) and commits it all at once. Two commands for one model therefore run
one after the other, and the second decides on what the first left: of two promotes,
the second finds nothing to promote.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from modelhost._actor import current_actor
from modelhost._utils import as_utc, utcnow
from modelhost.entities import Deployment, DeploymentEvent, Stage, StageChange
from modelhost.errors import ConflictError, NothingToRollBackError
from modelhost.store import audit
from modelhost.store.database import Database, WriteConflictError
from modelhost.store.deployment_rows import RUNNING, deployment_from_row
from modelhost.store.models import (
    ROLLBACK_REASON,
    bump_routing_revision,
    lock_model,
    move_stage,
    rollback_target,
    semver_of,
)
from modelhost.store.schema import DeploymentEventRow, DeploymentRow, ModelVersionRow


@dataclass(frozen=True)
class ModelFacts:
    """What a decision may look at: the model's versions and their stages."""

    model: str
    stages: Mapping[str, Stage]  # version -> stage
    now: dt.datetime

    @property
    def production(self) -> str | None:
        return next((v for v, stage in self.stages.items() if stage is Stage.PRODUCTION),
                    None)


@dataclass(frozen=True)
class Change:
    """A decision: the deployment to store, what happened (events), the version to put
    into production (archiving the one there; ``rollback`` puts the previous one back),
    and the audit entry."""

    deployment: Deployment
    events: Sequence[DeploymentEvent]
    action: str  # the audit action, e.g. deployment.deploy ("": no audit entry)
    promote: str | None = None
    rollback: bool = False
    reason: str = ""
    audit_after: Mapping[str, Any] = field(default_factory=dict)
    routing: bool = True  # what is served changes (False: only events or analysis)


Decide = Callable[[Deployment, ModelFacts], Change]


class DeploymentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, model: str) -> Deployment:
        """The model's deployment (idle when it never had one). Raises
        ModelNotFoundError."""
        with self._db.session() as s:
            facts = _facts(s, model, lock=False)
            row = s.get(DeploymentRow, model)
            return _current(row, facts)

    def get_with_facts(self, model: str) -> tuple[Deployment, ModelFacts]:
        """The deployment and the model's versions, read together (unlocked)."""
        with self._db.session() as s:
            facts = _facts(s, model, lock=False)
            return _current(s.get(DeploymentRow, model), facts), facts

    def running(self) -> list[Deployment]:
        """Every deployment with a rollout under way (for the controller)."""
        with self._db.session() as s:
            rows = list(s.scalars(select(DeploymentRow).where(DeploymentRow.state.in_(RUNNING))
                                  .order_by(DeploymentRow.model)))
            return [_current(row, _facts(s, row.model, lock=False)) for row in rows]

    def events(self, model: str, *, limit: int = 1000) -> list[DeploymentEvent]:
        """The model's events, newest last (the last ``limit``)."""
        with self._db.session() as s:
            lock_model(s, model, lock=False)  # ModelNotFoundError
            rows = list(s.scalars(select(DeploymentEventRow)
                                  .where(DeploymentEventRow.model == model)
                                  .order_by(DeploymentEventRow.id.desc()).limit(limit)))
        return [_event(row) for row in reversed(rows)]

    def change(self, model: str, decide: Decide) -> tuple[Deployment, list[StageChange]]:
        """Apply ``decide``'s change in one transaction, the model row locked. What
        ``decide`` raises (ConflictError, InvalidInputError, ...) leaves everything as
        it was. Returns the deployment as stored and the stage changes made."""
        try:
            with self._db.session(write=True) as s:
                facts = _facts(s, model, lock=True)
                row = s.get(DeploymentRow, model)
                current = _current(row, facts)
                change = decide(current, facts)
                stages = _move_stages(s, model, change, facts.now)
                new = change.deployment
                events = list(change.events)
                if change.rollback:  # the version production went back to
                    back = next(c.version for c in stages if c.to_stage is Stage.PRODUCTION)
                    events = [replace(e, to_version=back) if e.to_version is None else e
                              for e in events]
                if row is None:
                    row = DeploymentRow(model=model)
                    s.add(row)
                _write(row, new, facts.now)
                actor = current_actor().name
                for event in events:
                    s.add(DeploymentEventRow(
                        model=model, rollout_id=event.rollout_id or new.rollout_id,
                        at=event.at, kind=event.kind, from_version=event.from_version,
                        to_version=event.to_version, reason=event.reason,
                        numbers=dict(event.numbers), actor=event.actor or actor))
                stable = next((c.version for c in stages
                               if c.to_stage is Stage.PRODUCTION), facts.production)
                if change.action:  # none for the controller's memory alone
                    audit.append(s, change.action, model,
                                 before={"state": current.state.value,
                                         "stable": current.stable,
                                         "candidate": current.candidate,
                                         "weights": current.weights},
                                 after={"state": new.state.value, "stable": stable,
                                        "candidate": new.candidate,
                                        **dict(change.audit_after)})
                if change.routing or stages:
                    bump_routing_revision(s)
                s.flush()
                return deployment_from_row(row, stable), stages
        except WriteConflictError as exc:
            raise ConflictError(
                f"another change to {model!r} happened at the same time; try again") from exc


def _facts(s: Any, model: str, *, lock: bool) -> ModelFacts:
    row = lock_model(s, model, lock=lock)
    v = ModelVersionRow  # the numbers and stages only: not the versions' JSON columns
    stages = {f"{major}.{minor}.{patch}": Stage(stage) for major, minor, patch, stage in
              s.execute(select(v.major, v.minor, v.patch, v.stage)
                        .where(v.model_id == row.id))}
    return ModelFacts(model=model, stages=stages, now=utcnow())


def _current(row: DeploymentRow | None, facts: ModelFacts) -> Deployment:
    if row is None:
        return Deployment(model=facts.model, stable=facts.production)
    return deployment_from_row(row, facts.production)


def _move_stages(s: Any, model: str, change: Change, now: dt.datetime) -> list[StageChange]:
    """Put ``change.promote`` into production (through staging when it has no stage),
    or, for a rollback, the previous production version back; archive the current."""
    if change.promote is None and not change.rollback:
        return []
    model_row = lock_model(s, model, lock=False)
    current = s.scalar(select(ModelVersionRow).where(
        ModelVersionRow.model_id == model_row.id,
        ModelVersionRow.stage == Stage.PRODUCTION.value))
    if change.rollback:
        if current is None:
            raise NothingToRollBackError(model, "it has no production version")
        target = rollback_target(s, model_row.id, current.id)
        if target is None:
            raise NothingToRollBackError(
                model, f"no version that was in production before {semver_of(current)} "
                "is archived")
        reason = ROLLBACK_REASON + change.reason
    else:
        target = next(v for v in s.scalars(select(ModelVersionRow).where(
            ModelVersionRow.model_id == model_row.id)) if semver_of(v) == change.promote)
        reason = change.reason
        if current is not None and current.id == target.id:
            return []
    moves: list[StageChange] = []
    if current is not None:
        moves.append(move_stage(s, model, current, Stage.ARCHIVED,
                                f"replaced by {semver_of(target)}: {change.reason}", now))
        s.flush()  # free the one-production slot before taking it
    if Stage(target.stage) is Stage.NONE:
        moves.append(move_stage(s, model, target, Stage.STAGING, change.reason, now))
    moves.append(move_stage(s, model, target, Stage.PRODUCTION, reason, now))
    model_row.updated_at = now
    for move in moves:
        audit.append(s, "model.stage", f"{model}:{move.version}",
                     before={"stage": move.from_stage.value},
                     after={"stage": move.to_stage.value, "reason": move.reason})
    return moves


def _write(row: DeploymentRow, d: Deployment, now: dt.datetime) -> None:
    row.state = d.state.value
    row.strategy = None if d.strategy is None else d.strategy.value
    row.rollout_id = d.rollout_id
    row.candidate = d.candidate
    row.candidate_weight = d.candidate_weight
    row.shadow_fraction = d.shadow_fraction
    row.steps = list(d.steps)
    row.step = d.step
    row.options = dict(d.options)
    row.analysis = dict(d.analysis)
    row.previous = d.previous
    row.keep_until = d.keep_until
    row.started_at = d.started_at
    row.updated_at = now
    row.step_started_at = d.step_started_at


def _event(row: DeploymentEventRow) -> DeploymentEvent:
    return DeploymentEvent(model=row.model, kind=row.kind, at=as_utc(row.at),
                           from_version=row.from_version, to_version=row.to_version,
                           reason=row.reason, numbers=dict(row.numbers), actor=row.actor,
                           rollout_id=row.rollout_id)


__all__ = ["Change", "Decide", "DeploymentStore", "ModelFacts"]
