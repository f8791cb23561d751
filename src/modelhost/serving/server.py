"""The parts of a running server, typed once for the ASGI front, the API and tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelhost.batch.worker import WorkerOptions
from modelhost.monitoring import LogOptions
from modelhost.registry import Registry
from modelhost.serving.metrics import Metrics
from modelhost.serving.observers import Observers
from modelhost.serving.pool import ModelPool, PoolOptions
from modelhost.serving.predictor import Limits, Predictor
from modelhost.serving.watcher import RoutingWatcher


@dataclass(frozen=True)
class MonitorOptions:
    prediction_log: bool = True  # when the server is given a prediction log store
    log: LogOptions = field(default_factory=LogOptions)
    flush_s: float = 2.0  # how often each worker writes its buffered log
    # How long feedback for a request id not logged yet waits for the workers' flushes
    # (None: one flush interval and a second).
    feedback_wait_s: float | None = None
    prune_every_s: float = 3600.0  # how often each worker deletes what is past retention
    profiles: bool = True  # live profiles (drift), when the server is given a profile store
    profile_retention_days: int = 30  # hour windows; minute windows are kept two days
    alerts: bool = True  # evaluate alert rules (when the server is given an alert store)
    alerts_interval_s: float = 30.0
    metrics_window_s: float = 3600.0  # the window of the drift and quality gauges
    pipelines_dir: Path | None = None  # where pipeline actions may run specs from
    rollouts: bool = True  # run the rollout controller (when given a deployment store)
    rollout_interval_s: float = 5.0


@dataclass(frozen=True)
class JobOptions:
    run: bool = True  # run jobs in this server's processes (when given a job service)
    worker: WorkerOptions = field(default_factory=WorkerOptions)


@dataclass(frozen=True)
class ServerOptions:
    limits: Limits = field(default_factory=Limits)
    pool: PoolOptions = field(default_factory=PoolOptions)
    redis_url: str | None = None
    model: str | None = None  # `serve --model NAME`: MLflow-style single-model server
    auth: bool = False  # require API keys (the server turns this on off loopback)
    public_metrics: bool = False  # /metrics without a key
    rate_limit: float | None = None  # requests/s per key without its own limit
    cors_origins: tuple[str, ...] = ()  # CORS off unless origins are given
    monitor: MonitorOptions = field(default_factory=MonitorOptions)
    jobs: JobOptions = field(default_factory=JobOptions)


@dataclass
class Server:
    """The parts of a running server, for the routes and for tests."""

    registry: Registry
    watcher: RoutingWatcher
    pool: ModelPool
    predictor: Predictor
    metrics: Metrics
    observers: Observers
    options: ServerOptions
    started: float = field(default_factory=time.time)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the database answered at the last check and no model waits for its
        first version (see :meth:`ModelPool.ready`); with the detail ``/readyz`` shows."""
        models_ready, detail = self.pool.ready()
        database = self.watcher.database_ok
        return database and models_ready, {"database": database, **detail}

    def knows(self, name: str | None) -> bool:
        """Whether ``name`` is a model of the routing table (one this server serves)."""
        return name is not None and name in self.watcher.table.models


class Background(Protocol):
    """Work that runs beside the server in each of its processes (a stream consumer):
    started once the server's parts run, stopped (and drained) before they stop. It
    never blocks the prediction path: it runs in its own tasks."""

    async def start(self, server: Server) -> None: ...

    async def stop(self) -> None: ...
