"""``GET /v1/models/{name}/monitoring/drift``: live inputs and predictions against the
version's reference profile (§3.8)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Query

from modelhost._utils import parse_duration, utcnow
from modelhost.errors import NotFoundError
from modelhost.monitoring.drift import DriftService
from modelhost.monitoring.performance import window_ending
from modelhost.registry import Registry


def install(api: FastAPI, registry: Registry, drift: DriftService | None) -> None:
    @api.get("/v1/models/{name}/monitoring/drift", tags=["monitoring"])
    async def model_drift(
            name: str,
            version: str | None = Query(default=None, description="Version or alias; "
                                        "default: the production version."),
            window: str = Query(default="1h", description="How far back: 30m, 12h, 7d, "
                                "...")) -> dict[str, Any]:
        """Per feature and for the predictions: the drift test Evidently would choose,
        its statistic, p-value and threshold, whether it drifted, and PSI; the data set
        drifts when at least half of the features do."""
        if drift is None:
            raise NotFoundError("live profiles are off on this server: there is no drift "
                                "to report")
        span = parse_duration(window)
        mv = await asyncio.to_thread(registry.get_version, name, version or "@production")
        start, end = window_ending(utcnow(), span)
        report = await asyncio.to_thread(drift.drift, name, mv.version, start=start,
                                         end=end)
        return report.to_dict()
