"""The model pool: loads, verifies and warms the versions the routing table names.

A version is loaded, verified and warmed up on its input example in a worker thread
*before* it takes traffic; the routing it replaces keeps serving until then, drains its
queue and is unloaded. A version that fails to load is logged (one line) and retried
with exponential backoff; it never disturbs the one serving. The table itself comes from
the routing watcher (``watcher.py``); which arm a request takes, from the router.

Versions load one at a time per process, under the flavors' ``LOAD_LOCK``: loading and
warming up a model imports libraries (scikit-learn, skops, onnxruntime, pandas), and
first imports from several threads at once break. Loading is CPU-bound, so little is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from modelhost.entities import ModelVersion
from modelhost.errors import ModelhostError, ModelNotReadyError
from modelhost.flavors import LOAD_LOCK, LoadedModel
from modelhost.registry import Registry
from modelhost.registry.scoring import Scorer
from modelhost.rollout import Routing
from modelhost.serving.batcher import AdaptiveBatcher
from modelhost.serving.table import EMPTY_TABLE, RoutingTable

if TYPE_CHECKING:
    from modelhost.serving.features import FeatureBinding

log = logging.getLogger(__name__)

# Most rows of a batch scored on the event loop when the version's model is a verified
# array kernel (AdaptiveBatcher's inline_rows): its arithmetic on this many rows of a
# few dozen features takes tens of microseconds, the loop's budget for one callback.
INLINE_ROWS = 256


@dataclass(frozen=True)
class PoolOptions:
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue_rows: int = 4096
    reload_interval_s: float = 2.0
    load_wait_s: float = 10.0  # how long a request for an unloaded version waits
    idle_unload_s: float = 300.0  # unload pinned, non-routed versions unused this long
    warmup: bool = True
    retry_initial_s: float = 1.0  # first retry of a failed load; doubles per failure
    retry_max_s: float = 60.0  # ... up to this


@dataclass(frozen=True)
class LoadFailure:
    """Why a version did not load, how often it failed, and when it is tried again."""

    reason: str  # one line, fit for clients: no path, no traceback
    attempts: int
    retry_at: float  # on the pool's clock


class VersionLoadFailedError(ModelNotReadyError):
    """The version's last load failed; the pool tries again in ``retry_after`` seconds."""

    code = "model_load_failed"

    def __init__(self, name: str, version: str, reason: str, retry_after: float) -> None:
        super().__init__(name, version, retry_after=max(1.0, retry_after))
        self.message = (f"{name} {version} failed to load: {reason}; the server tries "
                        f"again in {max(0.0, retry_after):.0f} s")
        self.args = (self.message,)


@dataclass
class ServedVersion:
    """A loaded version with its scorer and batcher, ready for traffic."""

    scorer: Scorer
    batcher: AdaptiveBatcher
    load_seconds: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    # The feature lookups of a version bound to a feature service (None: no lookups).
    features: FeatureBinding | None = None
    # The scorer's version and model, and their key, as plain attributes: read several
    # times per request.
    version: ModelVersion = field(init=False)
    model: LoadedModel = field(init=False)
    key: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.version = self.scorer.version
        self.model = self.scorer.model
        self.key = (self.version.model, self.version.version)

    def run_batch(self, inputs: Any, _params: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        """One model call on a (combined) batch, in the batcher's thread (on the event
        loop for a verified array kernel's small batches): predictions, probabilities
        (or None) and the mask of rows with a non-finite output (or None), computed once
        per batch so that each request only looks at its own slice."""
        return self.scorer.run(inputs)


def _describe(routing: Routing) -> str:
    """A routing for the log: ``1.2.0``, or ``1.2.0 95%, 1.3.0 5%, shadow 1.4.0 10%``."""
    if len(routing.arms) == 1 and routing.shadow is None:
        return routing.arms[0].version
    parts = [f"{arm.version} {arm.weight:.0%}" for arm in routing.arms]
    if routing.shadow is not None:
        parts.append(f"shadow {routing.shadow.version} {routing.shadow.fraction:.0%}")
    return ", ".join(parts)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _combine(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    import pandas as pd

    return pd.concat(parts, ignore_index=True)


class ModelPool:
    """Keeps the versions of the routing table loaded and warm, and switches each model's
    routing in once the versions of its arms are. The table comes from the watcher
    (:meth:`apply`); which arm a request takes is the router's business, not the pool's."""

    def __init__(self, registry: Registry, *, options: PoolOptions | None = None,
                 on_batch: Callable[[str, str, int, int, float], None] | None = None,
                 on_load: Callable[[str, str, float], None] | None = None,
                 on_load_failed: Callable[[str, str], None] | None = None,
                 bind_features: Callable[[ModelVersion], FeatureBinding | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._bind_features = bind_features
        self.options = options or PoolOptions()
        self._clock = clock
        self._on_batch = on_batch
        self._on_load = on_load
        self._on_load_failed = on_load_failed
        self._served: dict[tuple[str, str], ServedVersion] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[ServedVersion]] = {}
        self._failed: dict[tuple[str, str], LoadFailure] = {}
        self._load_gate = asyncio.Semaphore(1)  # one load at a time (see the module doc)
        self._retired: set[tuple[str, str]] = set()  # versions that lost their route
        self._table: RoutingTable = EMPTY_TABLE  # the table last applied
        self._active: dict[str, Routing] = {}  # model -> routing now taking traffic
        self._view = MappingProxyType(self._active)

    # --- lifecycle ------------------------------------------------------------------

    async def stop(self) -> None:
        for task in self._loading.values():
            task.cancel()
        for served in list(self._served.values()):
            await served.batcher.close(drain=True)
        self._served.clear()

    # --- the routing table ----------------------------------------------------------

    async def apply(self, table: RoutingTable) -> None:
        """Load what ``table`` routes to (retrying failed loads when due), switch each
        model whose arms are all loaded to its new routing, unload what is no longer
        needed. Until then a model keeps its previous routing."""
        self._table = table
        for name in list(self._active):
            if table.routing(name) is None:
                self._retired.update((name, v) for v in self._active.pop(name).versions)
        for name, entry in table.models.items():
            routing = entry.routing
            if routing is None:
                continue
            for version in routing.versions | entry.keep:  # keep: warm for a rollback
                key = (name, version)
                if (key not in self._served and key not in self._loading
                        and self._retry_due(key)):
                    self._start_loading(key)
            self._switch_when_loaded(name)
        await self._unload_idle()

    def active(self, name: str) -> Routing | None:
        """The routing taking ``name``'s traffic: the table's once its arms are loaded,
        the previous one until then, None when the model has none."""
        return self._active.get(name)

    @property
    def active_routings(self) -> Mapping[str, Routing]:
        """Model -> routing taking its traffic (a live, read-only view)."""
        return self._view

    @property
    def routes(self) -> dict[str, str]:
        """Model -> the stable version taking its traffic."""
        return {name: routing.arms[0].version for name, routing in self._active.items()}

    def _switch_when_loaded(self, name: str) -> None:
        routing = self._table.routing(name)
        previous = self._active.get(name)
        if routing is None or routing == previous or not all(
                (name, arm.version) in self._served for arm in routing.arms):
            return
        self._active[name] = routing
        if previous is not None:
            self._retired.update((name, v) for v in previous.versions - routing.versions)
        log.info("%s: serving %s (was %s)", name, _describe(routing),
                 _describe(previous) if previous is not None else "nothing")

    async def _unload_idle(self) -> None:
        """Unload versions that were replaced and have drained, or sat unused too long."""
        now = time.monotonic()
        wanted = self._table.wanted()
        active = {(n, v) for n, r in self._active.items() for v in r.versions}
        for key, served in list(self._served.items()):
            if key in active or key in wanted:
                continue
            unused_for = now - served.last_used
            drained = served.batcher.queued_rows == 0 and not served.batcher.in_flight
            replaced = key in self._retired and drained and (
                unused_for > 2 * self.options.reload_interval_s)
            if replaced or unused_for > self.options.idle_unload_s:
                if self._served.pop(key, None) is None:  # an overlapping apply() did it
                    continue
                self._retired.discard(key)
                await served.batcher.close(drain=True)
                log.info("%s %s unloaded", *key)

    def _retry_due(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` may be loaded now: it never failed, or its backoff is over."""
        failure = self._failed.get(key)
        return failure is None or self._clock() >= failure.retry_at

    # --- lookup ---------------------------------------------------------------------

    def next_retry_in(self) -> float | None:
        """Seconds until the next failed load of the table is due for its retry."""
        wanted = self._table.wanted()
        due = [f.retry_at - self._clock() for k, f in self._failed.items()
               if k in wanted and k not in self._loading]
        return min(due) if due else None

    # --- lookup ---------------------------------------------------------------------

    def loaded(self, name: str, version: str) -> bool:
        return (name, version) in self._served

    def if_loaded(self, name: str, version: str) -> ServedVersion | None:
        """The version if it is loaded now (never loads it)."""
        return self._served.get((name, version))

    async def get(self, name: str, version: str) -> ServedVersion:
        """The loaded ``version`` of ``name``, loading it when needed (an unrouted,
        pinned version too: it is unloaded again when unused for ``idle_unload_s``).

        Raises ModelNotReadyError (still loading after ``load_wait_s``),
        VersionLoadFailedError, and what loading raises (NotFoundError, ...).
        """
        served = self._served.get((name, version))
        if served is None:
            served = await self._await_load((name, version))
        served.last_used = time.monotonic()
        return served

    async def _await_load(self, key: tuple[str, str]) -> ServedVersion:
        task = self._loading.get(key)
        if task is None:
            failure = self._failed.get(key)
            if failure is not None and not self._retry_due(key):
                raise VersionLoadFailedError(*key, failure.reason,
                                             failure.retry_at - self._clock())
            task = self._start_loading(key)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.options.load_wait_s)
        except TimeoutError:
            raise ModelNotReadyError(*key, retry_after=2.0) from None

    def _start_loading(self, key: tuple[str, str]) -> asyncio.Task[ServedVersion]:
        task = asyncio.create_task(self._load(key), name=f"load {key[0]} {key[1]}")
        self._loading[key] = task
        task.add_done_callback(functools.partial(self._loaded, key))
        return task

    def _loaded(self, key: tuple[str, str], task: asyncio.Task[ServedVersion]) -> None:
        self._loading.pop(key, None)
        if not task.cancelled():
            task.exception()  # logged and recorded by _load; waiting requests get it too

    async def _load(self, key: tuple[str, str]) -> ServedVersion:
        async with self._load_gate:
            started = time.perf_counter()
            try:
                served = await asyncio.to_thread(self._load_sync, *key)
            except ModelhostError as exc:
                raise self._fail(key, exc, reason=exc.message, detail=exc.message) from exc
            except Exception as exc:
                # Clients get the class of error only: its text may hold local paths.
                raise self._fail(key, exc, detail=f"{type(exc).__name__}: {exc}",
                                 reason=f"unexpected {type(exc).__name__} while loading; "
                                 "the server log has the details") from exc
        served.load_seconds = time.perf_counter() - started
        self._served[key] = served
        self._failed.pop(key, None)
        if self._on_load is not None:
            self._on_load(*key, served.load_seconds)
        log.info("%s %s loaded in %.2f s", *key, served.load_seconds)
        self._switch_when_loaded(key[0])  # in the same step: never loaded and unrouted
        return served

    def _fail(self, key: tuple[str, str], exc: Exception, *, reason: str,
              detail: str) -> VersionLoadFailedError:
        """Record a failed load and schedule its retry; log it on one line (with the
        traceback only when debug logging is on). Returns the error for the requests
        that waited for this load."""
        previous = self._failed.get(key)
        attempts = previous.attempts + 1 if previous is not None else 1
        delay = min(self.options.retry_max_s,
                    self.options.retry_initial_s * 2.0 ** (attempts - 1))
        failure = LoadFailure(reason=_one_line(reason), attempts=attempts,
                              retry_at=self._clock() + delay)
        self._failed[key] = failure
        if self._on_load_failed is not None:
            self._on_load_failed(*key)
        log.warning("%s %s failed to load (attempt %d): %s; retrying in %g s", *key,
                    attempts, _one_line(detail), delay,
                    exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        return VersionLoadFailedError(*key, failure.reason, delay)

    def _load_sync(self, name: str, version: str) -> ServedVersion:
        with LOAD_LOCK:
            return self._build(name, version)

    def _build(self, name: str, version: str) -> ServedVersion:
        loaded = self._registry.load(name, version)
        mv = loaded.version
        scorer = Scorer(mv, loaded.model)  # imports pandas: after listening, not before
        if self.options.warmup:
            # Requests are validated straight into a 2-D array (no pandas on the hot
            # path) when the signature is all numeric and the model takes such an array.
            scorer.warm_up()
        on_batch = self._on_batch

        def report(rows: int, requests: int, seconds: float) -> None:
            if on_batch is not None:
                on_batch(name, version, rows, requests, seconds)

        served = ServedVersion(scorer=scorer, batcher=None)  # type: ignore[arg-type]
        if self._bind_features is not None:
            served.features = self._bind_features(mv)
        served.batcher = AdaptiveBatcher(
            served.run_batch, combine=_combine, max_batch_size=self.options.max_batch_size,
            max_wait_ms=self.options.max_wait_ms, max_queue_rows=self.options.max_queue_rows,
            name=f"{name} {version}", on_batch=report,
            inline_rows=min(self.options.max_batch_size, INLINE_ROWS) if scorer.runs_arithmetic
            else 0)
        return served

    # --- readiness ------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether no model waits for its first version, and the detail ``/readyz`` shows.

        Each model with a routing serves one (the table's, or the previous one while the
        new one loads) or a version of its routing failed to load. A failed version does
        not hold the others back: it is listed under ``failed`` with its reason and the
        time to its next retry, and is retried with backoff. ``loading`` lists the
        versions of the table not loaded yet (retries of failed ones are under ``failed``).
        """
        now = self._clock()
        failed: dict[str, dict[str, Any]] = {}
        loading: dict[str, str] = {}
        for name, version in sorted(self._table.wanted()):
            key = (name, version)
            if key in self._served:
                continue
            failure = self._failed.get(key)
            if failure is None:
                loading[name] = version
            else:
                failed[name] = {"version": version, "reason": failure.reason,
                                "attempts": failure.attempts,
                                "retry_in_s": round(max(0.0, failure.retry_at - now), 1)}
        waiting = [n for n in loading if n not in self._active]
        return not waiting, {"serving": self.routes, "loading": loading, "failed": failed}

    async def wait_until_ready(self, *, timeout_s: float) -> bool:
        """Wait until no version of the table is loading for the first time any more
        (each has loaded or failed), at most ``timeout_s``; then return :meth:`ready`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            wanted = self._table.wanted()
            loading = [t for k, t in self._loading.items()
                       if k in wanted and k not in self._failed]
            if not loading:
                break
            await asyncio.wait(loading, timeout=max(0.0, deadline - time.monotonic()))
        return self.ready()[0]
