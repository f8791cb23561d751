"""The routing watcher: keeps each worker's routing table in step with the database.

Workers share nothing but the database. Every ``interval_s`` the watcher reads the routing
revision (one small query) and re-reads the routing state (one query) only when that
number changed, then publishes the table, whole, to the pool. The database being down
is not an error here: loaded models keep serving, and ``database_ok`` tells readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from modelhost.entities import RoutingState
from modelhost.errors import StoreUnavailableError
from modelhost.registry import Registry
from modelhost.serving.table import EMPTY_TABLE, RoutingTable

log = logging.getLogger(__name__)

Publish = Callable[[RoutingTable], Awaitable[None]]


class RoutingWatcher:
    def __init__(self, registry: Registry, *, interval_s: float, publish: Publish,
                 only: str | None = None,
                 wake_in: Callable[[], float | None] = lambda: None) -> None:
        """``publish`` gets the table after every successful check (changed or not: the
        pool also retries due loads and unloads idle versions then). ``wake_in`` says
        how soon something is due (a failed load's retry), to check sooner than the
        interval. ``only`` restricts the table to one model (``serve --model``)."""
        self._registry = registry
        self._interval_s = interval_s
        self._publish = publish
        self._wake_in = wake_in
        self.only = only
        self.table: RoutingTable = EMPTY_TABLE
        self.database_ok = False
        self._stale = True  # re-read the whole state at the next check
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._watch(), name="modelhost-routing-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            # A failed load's retry is worth an early check, unless the database is down.
            due = self._wake_in() if self.database_ok else None
            delay = self._interval_s if due is None else min(self._interval_s, due)
            await asyncio.sleep(max(0.01, delay))
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any single failure
                log.exception("routing refresh failed")

    async def refresh(self, *, reread: bool = False) -> None:
        """Check the routing revision; re-read the routing state when it changed (or on
        the first check, after a database error, or with ``reread``); publish."""
        try:
            state = await asyncio.to_thread(self._read, reread or self._stale)
        except StoreUnavailableError:
            if self.database_ok:
                log.warning("database unreachable; loaded models keep serving")
            self.database_ok = False
            self._stale = True
            return
        self.database_ok = True
        self._stale = False
        current = self.table.revision
        # Two checks may overlap (the watcher's and a lookup of a new model): never go back.
        if state is not None and (current is None or state.revision >= current):
            self.table = RoutingTable.from_state(state, only=self.only)
        await self._publish(self.table)

    def _read(self, reread: bool) -> RoutingState | None:
        """The routing state, or None when the revision says the table is current."""
        if not reread and self._registry.routing_revision() == self.table.revision:
            return None
        return self._registry.routing_state()

    async def discover(self, name: str) -> None:
        """Look for a model the table does not know: raises ModelNotFoundError when it
        does not exist; else (registered since the last read) reads the state again."""
        await asyncio.to_thread(self._registry.get_model, name)
        await self.refresh(reread=True)
