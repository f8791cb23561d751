"""The job worker of one server process: claims jobs, runs them off the event loop, and
holds each with a lease it renews, so that a job whose process dies runs again elsewhere.

At most ``concurrency`` jobs run at once in a process, each in a worker thread (scoring
is numpy and the model's own code: the event loop keeps answering requests). On SQLite,
whose writes are serialized anyway, only the process holding the ``jobs`` lease runs jobs
(``exclusive``); on PostgreSQL every process of every replica claims its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from modelhost._actor import acting_as
from modelhost._utils import utcnow
from modelhost.batch.jobs import JobService, Outcome
from modelhost.entities import Job
from modelhost.store.alerts import LeaseStore

log = logging.getLogger(__name__)

LEASE = "jobs"


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 1  # jobs at once in one process
    poll_s: float = 1.0  # how often an idle worker looks for jobs
    lease_s: float = 30.0  # a job's lease; renewed every third of it
    max_attempts: int = 3  # runs of a job whose worker died before it is failed


class JobWorker:
    def __init__(self, service: JobService, *, options: WorkerOptions | None = None,
                 leases: LeaseStore | None = None,
                 now: Callable[[], dt.datetime] = utcnow) -> None:
        """``leases``: only the holder of the ``jobs`` lease runs jobs (SQLite)."""
        self._service = service
        self._options = options or WorkerOptions()
        self._leases = leases
        self._now = now
        self.holder = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: dict[str, tuple[Job, asyncio.Task[None]]] = {}

    @property
    def running(self) -> list[str]:
        return list(self._running)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="modelhost-jobs")

    def wake(self) -> None:
        """Look for jobs now (a job was just submitted to this process)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; give the running jobs back to the queue (another process, or
        this server when it starts again, runs them from the start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job, task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._service.release, job, self.holder)
        if self._leases is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._leases.release, LEASE, self.holder)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a database down: try again at the next poll
                log.exception("looking for jobs failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._options.poll_s)
            self._wake.clear()

    async def run_once(self) -> list[Job]:
        """Claim jobs while slots are free; returns the jobs started (not awaited)."""
        started: list[Job] = []
        if self._leases is not None:
            ttl = dt.timedelta(seconds=max(3 * self._options.poll_s, 10.0))
            held = await asyncio.to_thread(self._leases.acquire, LEASE, self.holder,
                                           ttl=ttl, now=self._now())
            if not held:
                return started
        ttl = dt.timedelta(seconds=self._options.lease_s)
        while len(self._running) < self._options.concurrency:
            job = await asyncio.to_thread(self._service.claim, self.holder, ttl=ttl,
                                          max_attempts=self._options.max_attempts)
            if job is None:
                break
            task = asyncio.create_task(self._run(job), name=f"modelhost-job-{job.id}")
            self._running[job.id] = (job, task)
            task.add_done_callback(functools.partial(self._forget, job.id))
            started.append(job)
        return started

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)

    async def _run(self, job: Job) -> None:
        ttl = dt.timedelta(seconds=self._options.lease_s)
        scoring = asyncio.ensure_future(asyncio.to_thread(self._score, job))
        try:
            while True:
                done, _ = await asyncio.wait({scoring}, timeout=self._options.lease_s / 3)
                if done:
                    break
                if not await asyncio.to_thread(self._service.renew, job, self.holder,
                                               ttl=ttl):
                    log.warning("job %s: the lease was lost; its result is dropped", job.id)
                    return
            outcome = scoring.result()
            if not await asyncio.to_thread(self._service.finish, job, self.holder, outcome):
                log.warning("job %s: the lease was lost before it finished", job.id)
        except asyncio.CancelledError:
            raise
        except Exception:  # the store failed: give the job back for another try
            log.exception("job %s failed to run; it goes back to the queue", job.id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._service.release, job, self.holder)

    def _score(self, job: Job) -> Outcome:
        with acting_as(f"job:{job.id}"):
            return self._service.run(job)
