"""``/v1/deployments/{name}``: a model's deployment, its rollouts and their events
(PRODUCT.md §3.7). The ``deployer`` role starts, moves and rolls back rollouts; ``viewer``
reads the deployment and its events. Every check and decision is the rollout service's;
its blocking calls (the database, loading a candidate) run in a worker thread."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from modelhost.errors import NotFoundError
from modelhost.rollout.controller import Controller
from modelhost.rollout.service import ACTIONS, RolloutService

_REASON = Field(default="", max_length=1000,
                description="Why, in words: stored with the event and the audit entry.")


class DeployRequest(BaseModel):
    """A rollout to start; the service checks the strategy and every option and names
    each problem."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="The version to roll out: 1.3.0, latest or @alias.")
    strategy: Any = Field(default="canary",
                          description="blue_green (or blue-green), canary, ab or shadow.")
    options: Any = Field(default=None, description=(
        "The strategy's options (defaults in brackets). blue_green: keep_previous_s (600). "
        "canary: steps ([5, 25, 50, 100], percent of traffic), step_duration_s (300), "
        "min_requests (200), max_error_rate (0.02), max_p99_ratio (1.5). ab: split (0.5, "
        "the candidate's share), metric (accuracy), alpha (0.05), min_samples (200), "
        "auto_promote (false). shadow: fraction (0.1). Every strategy: keep_previous_s. "
        "Durations also as text: 30s, 10m."))


class RolloutRequest(BaseModel):
    """An action on the rollout under way."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(description="|".join(ACTIONS) + ".")
    reason: str = _REASON


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = _REASON


def install(api: FastAPI, service: RolloutService | None,
            controller: Controller | None = None) -> None:
    def rollouts() -> RolloutService:
        if service is None:
            raise NotFoundError("deployments are not available on this server")
        return service

    @api.get("/v1/deployments/{name}", tags=["deployments"])
    async def get_deployment(name: str) -> dict[str, Any]:
        """The model's deployment: stable and candidate versions, strategy, state, the
        traffic weights (adding up to 1), the shadow copy, the canary's step. `idle`
        with its production version when it never had a rollout."""
        deployment = await asyncio.to_thread(rollouts().status, name)
        return deployment.to_dict()

    @api.post("/v1/deployments/{name}", tags=["deployments"], status_code=202)
    async def deploy(name: str, body: DeployRequest) -> dict[str, Any]:
        """Start a rollout: blue-green switches at once; canary, A/B and shadow start
        their split. The version must load and predict its input example first. 409
        while another rollout of the model runs, 422 naming every bad option."""
        deployment = await asyncio.to_thread(rollouts().deploy, name, body.version,
                                             body.strategy, body.options)
        return deployment.to_dict()

    @api.post("/v1/deployments/{name}/rollout", tags=["deployments"])
    async def rollout_action(name: str, body: RolloutRequest) -> dict[str, Any]:
        """`promote` the candidate into production, `abort` the rollout, `step` a canary
        to its next share, `pause` or `resume` it. 409 when nothing is under way or the
        state does not allow the action."""
        deployment = await asyncio.to_thread(rollouts().act, name, body.action,
                                             reason=body.reason)
        return deployment.to_dict()

    @api.post("/v1/deployments/{name}/rollback", tags=["deployments"])
    async def rollback(name: str, body: RollbackRequest | None = None) -> dict[str, Any]:
        """Back to the previous stable version at once: a rollout under way stops
        sending its candidate traffic; otherwise production returns to the version it
        had before. 409 when there is nothing to roll back to."""
        reason = body.reason if body is not None else ""
        deployment = await asyncio.to_thread(rollouts().rollback, name, reason=reason)
        return deployment.to_dict()

    @api.get("/v1/deployments/{name}/analysis", tags=["deployments"])
    async def deployment_analysis(name: str) -> dict[str, Any]:
        """What each arm did since its canary step or A/B test started (requests,
        errors, error rate, p50 and p99 latency, labelled rows and the metric), the
        verdict the controller would reach now (canary), the sequential test (A/B), or
        the shadow's agreement with the stable version."""
        rollouts()
        if controller is None:
            raise NotFoundError("rollout analysis needs the live profiles of this server")
        return await asyncio.to_thread(controller.analysis, name)

    @api.get("/v1/deployments/{name}/events", tags=["deployments"])
    async def deployment_events(name: str) -> dict[str, Any]:
        """What happened to the deployment, newest last: each event's `reason` in words
        and, for automatic decisions, the `numbers` behind it."""
        events = await asyncio.to_thread(rollouts().events, name)
        return {"events": [e.to_dict() for e in events]}
