"""The server's side of monitoring: the prediction log and the live profiles with the
observer that records requests for them, their flusher, the feedback service behind
``/v1/feedback``, the drift service behind ``/v1/models/{name}/monitoring/drift``, and
the alert rules with their evaluator (``alerting.py``).

Both monitors share one observer (``monitoring.record.Recorder``: one record per
request). The flusher is a background task of each worker: every ``flush_s`` it hands
the recorded requests to the log (which stores them) and the live profiles (which count
and write them), from a worker thread (never on the event loop), and every
``prune_every_s`` it deletes what is past the retention. Its failures are logged, never
raised: the prediction path does not depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from modelhost._utils import utcnow
from modelhost.monitoring import FeedbackService, PredictionLog
from modelhost.monitoring.alerts import (
    AlertService,
    Health,
    MonitorMetrics,
    evaluator_for,
    metrics_for,
    resolver,
)
from modelhost.monitoring.drift import MINUTE_RETENTION, DriftService
from modelhost.monitoring.profiles import LiveProfiles
from modelhost.monitoring.record import MAX_REQUESTS, MAX_ROWS, Monitor, Recorder
from modelhost.registry import Registry
from modelhost.rollout.service import RolloutService
from modelhost.serving.alerting import ActionRunner, AlertLoop
from modelhost.serving.observers import Observer
from modelhost.serving.server import MonitorOptions
from modelhost.stats.profile import Reference
from modelhost.store.alerts import AlertStore, LeaseStore
from modelhost.store.monitoring import PredictionLogStore
from modelhost.store.profiles import ProfileStore

log = logging.getLogger(__name__)

_FLUSH_LIMIT = 20_000  # requests per transaction


class Monitoring:
    """What a worker monitors: the prediction log (with ``predictions`` and
    ``options.prediction_log``) and live profiles (with ``profiles`` and
    ``options.profiles``); either may be off."""

    def __init__(self, registry: Registry, options: MonitorOptions, *,
                 predictions: PredictionLogStore | None = None,
                 profiles: ProfileStore | None = None,
                 alerts: AlertStore | None = None,
                 leases: LeaseStore | None = None,
                 rollouts: RolloutService | None = None,
                 served: Callable[[], Iterable[tuple[str, str]]] = tuple,
                 publish_health: Callable[[Sequence[Health] | None], None] | None = None,
                 ) -> None:
        """``served()`` names the (model, version) pairs this server routes traffic to;
        the alert evaluator measures their drift and live quality over the last
        ``options.metrics_window_s`` after each pass and gives them to ``publish_health``."""
        self.options = options
        self.log: PredictionLog | None = None
        self.feedback: FeedbackService | None = None
        self.profiles: LiveProfiles | None = None
        self.drift: DriftService | None = None
        if predictions is not None and options.prediction_log:
            @functools.lru_cache(maxsize=1024)
            def columns(model: str, version: str) -> list[str] | None:
                """The signature's columns of a version (versions never change)."""
                signature = registry.get_version(model, version).signature
                return [c.name for c in signature.columns] if signature and \
                    signature.columns else None

            self.log = PredictionLog(predictions, options=options.log, columns=columns)
            self.feedback = FeedbackService(
                predictions, flush=self._flush_recorded,
                wait_s=(options.feedback_wait_s if options.feedback_wait_s is not None
                        else options.flush_s + 1.0),
                retention_days=options.log.retention.days)
        if profiles is not None:
            self.drift = DriftService(profiles, references=registry.reference, now=utcnow)
            if options.profiles:
                def reference(model: str, version: str) -> Reference | None:
                    stored = registry.reference(model, version)
                    return Reference.from_dict(stored.profile) if stored else None

                self.profiles = LiveProfiles(profiles, references=reference)
        self._profile_store = profiles
        monitors: list[Monitor] = [m for m in (self.log, self.profiles) if m is not None]
        # One record per request for both: bounded by the profiles' bounds (the
        # recorder's own) or the log's, whichever is larger.
        self.recorder = Recorder(
            monitors, max_requests=max(MAX_REQUESTS, options.log.buffer_requests),
            max_rows=max(MAX_ROWS, options.log.buffer_rows)) if monitors else None
        self.alerts: AlertService | None = None
        self._alert_loop: AlertLoop | None = None
        if alerts is not None:
            self.alerts = AlertService(alerts, resolve=resolver(registry),
                                       pipelines_dir=options.pipelines_dir)
            if options.alerts and leases is not None:
                measures = metrics_for(registry, predictions=predictions, drift=self.drift)
                evaluator = evaluator_for(registry, alerts, predictions=predictions,
                                          drift=self.drift, metrics=measures)
                window = dt.timedelta(seconds=options.metrics_window_s)

                def health(now: dt.datetime) -> list[Health]:
                    return _health(measures, sorted(served()), start=now - window, end=now)

                self._alert_loop = AlertLoop(
                    evaluator, ActionRunner(alerts, rollouts, self.alerts), leases,
                    interval_s=options.alerts_interval_s, health=health,
                    publish=publish_health)
        self._task: asyncio.Task[None] | None = None
        self._also: list[Callable[[], object]] = []
        self._also_prune: list[Callable[[dt.datetime], object]] = []

    def also_flush(self, flush: Callable[[], object]) -> None:
        """Run ``flush`` with every flush (in the flusher's thread): the shadow counts."""
        self._also.append(flush)

    def also_prune(self, prune: Callable[[dt.datetime], object]) -> None:
        """Run ``prune(now)`` with every pruning (in the flusher's thread)."""
        self._also_prune.append(prune)

    @property
    def observers(self) -> list[Observer]:
        return [] if self.recorder is None else [self.recorder]

    def start(self) -> None:
        if self.observers or self._also:
            self._task = asyncio.create_task(self._run(), name="modelhost-monitoring")
        if self._alert_loop is not None:
            self._alert_loop.start()

    async def stop(self) -> None:
        """Stop the alerts and the flusher, then write what is left (the requests are
        drained by now)."""
        if self._alert_loop is not None:
            await self._alert_loop.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._flush_all)

    def _flush_recorded(self) -> None:
        """Hand what is recorded to the log and the profiles (the profiles retry their
        unwritten windows even when nothing was recorded)."""
        if self.recorder is not None:
            while self.recorder.flush(limit=_FLUSH_LIMIT) == _FLUSH_LIMIT:
                pass

    def _flush_all(self) -> None:
        self._flush_recorded()
        for flush in self._also:
            flush()

    def _prune(self) -> None:
        now = utcnow()
        if self.log is not None:
            predictions, labels = self.log.prune(now)
            if predictions or labels:
                log.info("prediction log: pruned %d predictions and %d labels past the "
                         "retention", predictions, labels)
        if self._profile_store is not None and self.profiles is not None:
            windows = self._profile_store.prune(
                minutes_before=now - MINUTE_RETENTION,
                hours_before=now - dt.timedelta(days=self.options.profile_retention_days))
            if windows:
                log.info("live profiles: pruned %d windows past the retention", windows)
        for prune in self._also_prune:
            prune(now)

    async def _run(self) -> None:
        # The first prune soon after start (a restarted server catches up), then regularly.
        prune_at = time.monotonic() + min(60.0, self.options.prune_every_s)
        while True:
            await asyncio.sleep(self.options.flush_s)
            try:
                await asyncio.to_thread(self._flush_all)
                if time.monotonic() >= prune_at:
                    prune_at = time.monotonic() + self.options.prune_every_s
                    await asyncio.to_thread(self._prune)
            except Exception:  # the flusher must outlive any single failure
                log.exception("monitoring flush failed")


def _health(measures: MonitorMetrics, versions: Iterable[tuple[str, str]], *,
            start: dt.datetime, end: dt.datetime) -> list[Health]:
    """Each version's health; one that fails to measure is left out (and logged)."""
    found = []
    for model, version in versions:
        try:
            found.append(measures.health(model, version, start=start, end=end))
        except Exception:  # one version's failure must not hide the others
            log.exception("measuring the health of %s %s failed", model, version)
    return found
