"""``/v1/alerts``: alert rules and their events (PRODUCT.md §3.8). The ``deployer`` role
manages rules; ``viewer`` reads them and their events."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from modelhost._actor import current_actor
from modelhost.errors import NotFoundError
from modelhost.monitoring.alerts import AlertService, event_dict, rule_dict


class AlertRequest(BaseModel):
    """A rule; the service checks every field and names each problem."""

    model_config = ConfigDict(extra="forbid")

    model: Any = Field(description="The model the rule watches.")
    version: Any = Field(default=None, description="A version; default: whichever is in "
                         "production when the rule is evaluated.")
    metric: Any = Field(description="accuracy, precision, recall, f1, roc_auc, mae, rmse "
                        "(or NAME_change: live minus registered), drift_share, "
                        "dataset_drift, error_rate, requests, latency_mean_ms, "
                        "latency_p99_ms.")
    op: Any = Field(description="<, <=, > or >=.")
    threshold: Any = Field(description="The value the metric is compared with.")
    window: Any = Field(default="1h", description="What the metric is computed over: "
                        "30m, 12h, 7d, ...")
    min_samples: Any = Field(default=100, description="Fewest labelled rows (quality), "
                             "profiled rows (drift) or requests (traffic) to decide on.")
    cooldown: Any = Field(default="1h", description="Least time between two firings.")
    action: Any = Field(default="log", description="log, webhook, rollback or pipeline.")
    url: Any = Field(default=None, description="The webhook's http(s) address.")
    spec: Any = Field(default=None, description="The pipeline file (in the server's "
                      "MODELHOST_PIPELINES_DIR) to run.")


def install(api: FastAPI, service: AlertService | None) -> None:
    def alerts() -> AlertService:
        if service is None:
            raise NotFoundError("alert rules are not available on this server")
        return service

    @api.get("/v1/alerts", tags=["alerts"])
    async def list_alerts(model: str | None = Query(default=None)) -> dict[str, Any]:
        """The alert rules (of one model with `?model=`)."""
        rules = await asyncio.to_thread(alerts().rules, model)
        return {"alerts": [rule_dict(r) for r in rules]}

    @api.post("/v1/alerts", tags=["alerts"], status_code=201)
    async def add_alert(body: AlertRequest) -> dict[str, Any]:
        """Add a rule; 422 names every field that is wrong, 404 an unknown model."""
        spec = body.model_dump(exclude_none=True)
        rule = await asyncio.to_thread(alerts().add, spec, actor=current_actor().name)
        return rule_dict(rule)

    @api.get("/v1/alerts/events", tags=["alerts"])
    async def alert_events(model: str | None = Query(default=None),
                           rule_id: str | None = Query(default=None),
                           limit: int = Query(default=100, ge=1, le=10_000)
                           ) -> dict[str, Any]:
        """The newest events first: what fired, with its numbers, and what the action
        did (`status`: pending, done or failed; `outcome` says how)."""
        events = await asyncio.to_thread(alerts().events, model=model, rule_id=rule_id,
                                         limit=limit)
        return {"events": [event_dict(e) for e in events]}

    @api.delete("/v1/alerts/{rule_id}", tags=["alerts"], status_code=204)
    async def remove_alert(rule_id: str) -> Response:
        """Remove a rule (its events stay)."""
        await asyncio.to_thread(alerts().remove, rule_id)
        return Response(status_code=204)
