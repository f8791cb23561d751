"""The rollout controller of a running server: one process of all replicas advances the
rollouts.

Every worker of every replica runs this loop, but only the holder of the ``rollouts``
lease ticks the controller (another process takes over within a few intervals when it
dies, and continues from the state in the database: a rollout never depends on one
process's memory). A tick reads the database and acts in a worker thread, never on the
event loop; its failures are logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable

from modelhost._actor import acting_as
from modelhost._utils import utcnow
from modelhost.entities import Deployment
from modelhost.rollout.controller import Controller
from modelhost.store.alerts import LeaseStore

log = logging.getLogger(__name__)

LEASE = "rollouts"
ACTOR = "rollout-controller"


class RolloutLoop:
    def __init__(self, controller: Controller, leases: LeaseStore, *, interval_s: float,
                 now: Callable[[], dt.datetime] = utcnow) -> None:
        self._controller = controller
        self._leases = leases
        self._interval = interval_s
        self._now = now
        self.holder = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="modelhost-rollouts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._leases.release, LEASE, self.holder)

    async def tick_once(self) -> list[Deployment]:
        """One tick if this process holds (or takes) the lease."""
        ttl = dt.timedelta(seconds=max(3 * self._interval, 10.0))
        held = await asyncio.to_thread(self._leases.acquire, LEASE, self.holder, ttl=ttl,
                                       now=self._now())
        if not held:
            return []
        return await asyncio.to_thread(self._tick)

    def _tick(self) -> list[Deployment]:
        with acting_as(ACTOR):
            return self._controller.tick()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick_once()
            except Exception:  # the loop outlives any single failure (a database down)
                log.exception("rollout controller tick failed")
