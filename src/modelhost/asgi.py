"""The ASGI application of one ``modelhost serve`` worker, built from ``MODELHOST_*``.

uvicorn imports ``modelhost.asgi:app_factory`` in every worker. This module stays clear
of the CLI (Typer, rich), so that a worker imports only what serving needs.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from modelhost.client import Client
from modelhost.config import Settings

if TYPE_CHECKING:
    from modelhost.serving import ModelhostApp, ServerOptions


def server_options(settings: Settings) -> ServerOptions:
    """The server's options from the settings (the environment of the worker)."""
    from modelhost.batch.worker import WorkerOptions
    from modelhost.monitoring import LogOptions
    from modelhost.serving import Limits, MonitorOptions, PoolOptions, ServerOptions
    from modelhost.serving.server import JobOptions

    return ServerOptions(
        limits=Limits(max_body_bytes=settings.max_body_bytes, max_rows=settings.max_rows,
                      max_upload_bytes=settings.max_upload_bytes,
                      timeout_s=settings.request_timeout_s),
        pool=PoolOptions(max_batch_size=settings.max_batch_size,
                         max_wait_ms=settings.max_wait_ms,
                         max_queue_rows=settings.max_queue_rows,
                         reload_interval_s=settings.reload_interval_s),
        redis_url=settings.redis_url, model=settings.serve_model,
        auth=settings.auth == "required", public_metrics=settings.public_metrics,
        rate_limit=settings.rate_limit,
        cors_origins=tuple(o.strip() for o in (settings.cors_origins or "").split(",")
                           if o.strip()),
        monitor=MonitorOptions(
            prediction_log=settings.prediction_log, flush_s=settings.monitor_flush_s,
            profiles=settings.monitor_profiles,
            profile_retention_days=settings.monitor_retention_days,
            alerts=settings.alerts, alerts_interval_s=settings.alerts_interval_s,
            metrics_window_s=settings.monitor_metrics_window_s,
            pipelines_dir=settings.pipelines_dir,
            rollouts=settings.rollouts, rollout_interval_s=settings.rollout_interval_s,
            log=LogOptions(sample=settings.prediction_log_sample,
                           max_per_s=settings.prediction_log_max_per_s,
                           retention=dt.timedelta(days=settings.prediction_log_retention_days))),
        jobs=JobOptions(run=settings.jobs, worker=WorkerOptions(
            concurrency=settings.jobs_concurrency, lease_s=settings.jobs_lease_s,
            max_attempts=settings.jobs_max_attempts)))


def console_secret(settings: Settings) -> bytes:
    """What signs the web console's sessions: ``MODELHOST_CONSOLE_SECRET``, else the
    random secret kept in the home folder (shared by the server's workers)."""
    from modelhost.security.sessions import load_or_create_secret

    if settings.console_secret is not None:
        return settings.console_secret.get_secret_value().encode()
    return load_or_create_secret(settings.home / "console-secret")


def app_factory() -> ModelhostApp:
    """The ASGI app of one worker, configured from ``MODELHOST_*`` (uvicorn calls it)."""
    return build_app(Settings())


def build_app(settings: Settings) -> ModelhostApp:
    """The server over the store of ``settings``, with every service it can have (a
    stream consumer runs one without HTTP)."""
    from modelhost.serving import create_app

    client = Client(settings, migrate=False)
    background = []
    if settings.streams is not None:
        from modelhost.streams.config import parse_streams
        from modelhost.streams.task import StreamTask

        background = [StreamTask(c)
                      for c in parse_streams(settings.streams.get_secret_value())]
    return create_app(client.registry, options=server_options(settings), keys=client.keys,
                      audit=client.audit, predictions=client.predictions,
                      profiles=client.profiles, alerts=client.alert_store,
                      leases=client.leases, deployments=client.deployments,
                      shadows=client.shadows, jobs=client.jobs, features=client.features,
                      runs=client.run_store, datasets=client.dataset_store,
                      console_secret=console_secret(settings),
                      background=background)
