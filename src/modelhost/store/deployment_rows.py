"""Deployment rows as entities: shared by the deployment store and the routing state
(which ``store/models.py`` reads in one session with the stages and aliases)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from modelhost._utils import as_utc
from modelhost.entities import Deployment, RolloutState, Strategy
from modelhost.store.schema import DeploymentRow

RUNNING = (RolloutState.PROGRESSING.value, RolloutState.PAUSED.value)


def deployment_from_row(row: DeploymentRow, stable: str | None) -> Deployment:
    return Deployment(
        model=row.model, state=RolloutState(row.state),
        strategy=None if row.strategy is None else Strategy(row.strategy),
        rollout_id=row.rollout_id, stable=stable, candidate=row.candidate,
        candidate_weight=row.candidate_weight, shadow_fraction=row.shadow_fraction,
        steps=tuple(float(x) for x in row.steps), step=row.step, options=dict(row.options),
        analysis=dict(row.analysis),
        previous=row.previous, keep_until=_utc(row.keep_until),
        started_at=_utc(row.started_at), updated_at=_utc(row.updated_at),
        step_started_at=_utc(row.step_started_at))


def routed_deployments(s: Session, production: dict[str, str | None],
                       now: dt.datetime) -> dict[str, Deployment]:
    """The deployments that change what a model serves: a rollout under way, or a
    previous version still kept loaded."""
    rows = s.scalars(select(DeploymentRow).where(or_(
        DeploymentRow.state.in_(RUNNING), DeploymentRow.keep_until > now)))
    return {row.model: deployment_from_row(row, production.get(row.model)) for row in rows
            if row.model in production}


def _utc(at: dt.datetime | None) -> dt.datetime | None:
    return None if at is None else as_utc(at)
