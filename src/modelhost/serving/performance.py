"""``GET /v1/models/{name}/monitoring/performance``: live quality from feedback (§3.8)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Query

from modelhost._utils import parse_duration, utcnow
from modelhost.errors import NotFoundError
from modelhost.monitoring.performance import performance, window_ending
from modelhost.registry import Registry
from modelhost.serving.pool import ModelPool
from modelhost.store.monitoring import PredictionLogStore


def install(api: FastAPI, registry: Registry, pool: ModelPool,
            store: PredictionLogStore | None) -> None:
    @api.get("/v1/models/{name}/monitoring/performance", tags=["monitoring"])
    async def model_performance(
            name: str,
            version: str | None = Query(default=None, description="Version or alias; "
                                        "default: the production version."),
            window: str = Query(default="1h", description="How far back: 30m, 12h, 7d, "
                                "...")) -> dict[str, Any]:
        """Accuracy, precision, recall, F1 and ROC AUC (classification) or MAE and RMSE
        (regression) of the version's predictions that got feedback in the window, and
        their change against the metrics it was registered with."""
        if store is None:
            raise NotFoundError("the prediction log is off on this server "
                                "(MODELHOST_PREDICTION_LOG=false): there is no live "
                                "performance to report")
        span = parse_duration(window)
        mv = await asyncio.to_thread(registry.get_version, name, version or "@production")
        served = pool.if_loaded(name, mv.version)
        classes = getattr(served.model, "classes", None) if served is not None else None
        start, end = window_ending(utcnow(), span)
        result = await asyncio.to_thread(
            performance, store, model=name, version=mv.version, start=start, end=end,
            registered=mv.metrics, classes=list(classes) if classes is not None else None)
        return result.to_dict()
