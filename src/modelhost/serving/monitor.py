"""The server's side of monitoring: the prediction log as an observer, its flusher, and
the feedback service behind ``/v1/feedback``.

The flusher is a background task of each worker: every ``flush_s`` it writes the log's
buffer from a worker thread (never on the event loop), and every ``prune_every_s`` it
deletes what is past the retention. Its failures are logged, never raised: the
prediction path does not depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from modelhost._utils import utcnow
from modelhost.monitoring import FeedbackService, PredictionLog
from modelhost.registry import Registry
from modelhost.serving.server import MonitorOptions
from modelhost.store.monitoring import PredictionLogStore

log = logging.getLogger(__name__)

_FLUSH_LIMIT = 20_000  # requests per transaction


class Monitoring:
    def __init__(self, registry: Registry, store: PredictionLogStore,
                 options: MonitorOptions) -> None:
        self.options = options

        @functools.lru_cache(maxsize=1024)
        def columns(model: str, version: str) -> list[str] | None:
            """The signature's columns of a version (versions never change)."""
            signature = registry.get_version(model, version).signature
            return [c.name for c in signature.columns] if signature and \
                signature.columns else None

        self.log = PredictionLog(store, options=options.log, columns=columns)
        self.feedback = FeedbackService(
            store, flush=self._flush_all,
            wait_s=(options.feedback_wait_s if options.feedback_wait_s is not None
                    else options.flush_s + 1.0),
            retention_days=options.log.retention.days)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="modelhost-prediction-log")

    async def stop(self) -> None:
        """Stop the flusher, then write what is left (the requests are drained by now)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._flush_all)

    def _flush_all(self) -> None:
        while self.log.flush(limit=_FLUSH_LIMIT) == _FLUSH_LIMIT:
            pass

    async def _run(self) -> None:
        # The first prune soon after start (a restarted server catches up), then regularly.
        prune_at = time.monotonic() + min(60.0, self.options.prune_every_s)
        while True:
            await asyncio.sleep(self.options.flush_s)
            try:
                await asyncio.to_thread(self._flush_all)
                if time.monotonic() >= prune_at:
                    prune_at = time.monotonic() + self.options.prune_every_s
                    predictions, labels = await asyncio.to_thread(self.log.prune, utcnow())
                    if predictions or labels:
                        log.info("prediction log: pruned %d predictions and %d labels "
                                 "past the retention", predictions, labels)
            except Exception:  # the flusher must outlive any single failure
                log.exception("prediction log flush failed")
