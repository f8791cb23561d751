"""The model pool: which version serves each model, loading in the background, hot reload.

Every worker process has its own pool and shares nothing with the others but the
database: every ``reload_interval_s`` seconds a watcher reads the routing revision (one
small query), and re-reads the routing state (production versions, aliases, tags) only
when that number changed. A version is loaded, verified and warmed up on its input
example in a worker thread *before* it takes traffic; the version it replaces keeps
serving until then, drains its queue and is unloaded. A version that fails to load is
logged (one line) and retried with exponential backoff; it never disturbs the one serving.

Versions load one at a time per process, under the flavors' ``LOAD_LOCK``: loading and
warming up a model imports libraries (scikit-learn, skops, onnxruntime, pandas), and
first imports from several threads at once break. Loading is CPU-bound, so little is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelhost.entities import ModelVersion, RoutingState, SemVer
from modelhost.errors import (
    ModelhostError,
    ModelNotReadyError,
    NotFoundError,
    StoreUnavailableError,
    VersionSunsetError,
)
from modelhost.flavors import LOAD_LOCK, LoadedModel
from modelhost.registry import Registry
from modelhost.serving.batcher import AdaptiveBatcher

if TYPE_CHECKING:
    from modelhost.signature import InputValidator

log = logging.getLogger(__name__)


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


# A model opts in to the prediction cache with this tag set to "true".
CACHE_TAG = "serving.cache"


class VersionLoadFailedError(ModelNotReadyError):
    """The version's last load failed; the pool tries again in ``retry_after`` seconds."""

    code = "model_load_failed"

    def __init__(self, name: str, version: str, reason: str, retry_after: float) -> None:
        super().__init__(name, version, retry_after=max(1.0, retry_after))
        self.message = (f"{name} {version} failed to load: {reason}; the server tries "
                        f"again in {max(0.0, retry_after):.0f} s")
        self.args = (self.message,)


class NoProductionVersionError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} has no production version; pin one with the "
                         "X-Model-Version header or the /versions/{version} route")


@dataclass
class ServedVersion:
    """A loaded version with its validator and batcher, ready for traffic."""

    version: ModelVersion
    model: LoadedModel
    validator: InputValidator | None
    batcher: AdaptiveBatcher
    load_seconds: float
    # Requests are validated straight into a 2-D array (no pandas on the hot path) when
    # the signature is all numeric and the model takes such an array as is.
    as_array: bool = False
    last_used: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, str]:
        return self.version.model, self.version.version

    def run_batch(self, inputs: Any, params: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        """One model call on a (combined) batch; runs in the batcher's thread.

        Returns predictions, probabilities (or None) and, only when some output is NaN or
        infinite, a per-row mask of those rows (else None): checked once per batch here,
        so that each request only looks at its own slice of the mask."""
        predictions, probabilities = self.model.predict_with_proba(inputs)
        predictions = np.asarray(predictions)
        return predictions, probabilities, _nonfinite_rows(predictions, probabilities)


def _nonfinite_rows(*outputs: Any) -> Any:
    mask = None
    for output in outputs:
        if isinstance(output, np.ndarray) and output.dtype.kind in "fc" and output.ndim:
            finite = np.isfinite(output)
            if not finite.all():
                bad = ~finite.reshape(len(output), -1).all(axis=1)
                mask = bad if mask is None else mask | bad
    return mask


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
    def __init__(self, registry: Registry, *, options: PoolOptions | None = None,
                 today: Callable[[], dt.date] = dt.date.today,
                 on_batch: Callable[[str, str, int, int, float], None] | None = None,
                 on_load: Callable[[str, str, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self.options = options or PoolOptions()
        self._today = today
        self._clock = clock
        self._on_batch = on_batch
        self._on_load = on_load
        self._served: dict[tuple[str, str], ServedVersion] = {}
        self._loading: dict[tuple[str, str], asyncio.Task[ServedVersion]] = {}
        self._failed: dict[tuple[str, str], LoadFailure] = {}
        self._load_gate = asyncio.Semaphore(1)  # one load at a time (see the module doc)
        self._retired: set[tuple[str, str]] = set()  # versions that lost their route
        self.routes: dict[str, str] = {}  # model -> production version now taking traffic
        self._wanted: dict[str, str] = {}  # model -> production version in the database
        self._aliases: dict[str, dict[str, str]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._state: RoutingState | None = None  # the routing state last read
        self.database_ok = False
        self.cached_models: frozenset[str] = frozenset()
        self.pinned_model: str | None = None  # `serve --model NAME`: serve only this one

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        self._watcher = asyncio.create_task(self._watch(), name="modelhost-pool-watcher")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in self._loading.values():
            task.cancel()
        for served in list(self._served.values()):
            await served.batcher.close(drain=True)
        self._served.clear()

    async def _watch(self) -> None:
        while True:
            # Wake up early when a failed load is due for its retry.
            due = [f.retry_at - self._clock() for k, f in self._failed.items()
                   if self._wanted.get(k[0]) == k[1] and k not in self._loading]
            await asyncio.sleep(max(0.01, min([self.options.reload_interval_s, *due])))
            try:
                await self.refresh()
            except Exception:  # the watcher must outlive any single failure
                log.exception("model pool refresh failed")

    # --- routing --------------------------------------------------------------------

    async def refresh(self, *, reread: bool = False) -> None:
        """Check the routing revision and re-read the routing state (production versions,
        aliases, tags) when it changed, or on the first call, after a database error, or
        with ``reread``; then load what changed and switch."""
        try:
            state = await asyncio.to_thread(self._read_state, reread)
        except StoreUnavailableError:
            if self.database_ok:
                log.warning("database unreachable; loaded models keep serving")
            self.database_ok = False
            self._state = None  # read it all again once the database is back
            return
        self.database_ok = True
        self._state = state
        models = list(state.models)
        if self.pinned_model is not None:
            models = [m for m in models if m.name == self.pinned_model]
        self._aliases = {m.name: dict(m.aliases) for m in models}
        self.cached_models = frozenset(
            m.name for m in models if m.tags.get(CACHE_TAG, "").lower() in ("true", "on", "1"))
        self._wanted = {m.name: m.production_version for m in models
                        if m.production_version is not None}
        for name in list(self.routes):
            if name not in self._wanted:
                self._retired.add((name, self.routes.pop(name)))
        for name, version in self._wanted.items():
            if self.routes.get(name) == version:
                continue
            key = (name, version)
            if key in self._served:
                self._switch(name, version)
            elif key not in self._loading and self._retry_due(key):
                self._start_loading(key)
        await self._unload_idle()

    def _read_state(self, reread: bool) -> RoutingState:
        known = self._state
        if (known is not None and not reread
                and self._registry.routing_revision() == known.revision):
            return known
        return self._registry.routing_state()

    def _switch(self, name: str, version: str) -> None:
        previous = self.routes.get(name)
        self.routes[name] = version
        if previous is not None and previous != version:
            self._retired.add((name, previous))
        if previous != version:
            log.info("%s: serving %s (was %s)", name, version, previous or "nothing")

    async def _unload_idle(self) -> None:
        """Unload versions that were replaced and have drained, or sat unused too long."""
        now = time.monotonic()
        routed = set(self.routes.items())
        for key, served in list(self._served.items()):
            if key in routed:
                continue
            unused_for = now - served.last_used
            drained = served.batcher.queued_rows == 0 and not served.batcher.in_flight
            replaced = key in self._retired and drained and (
                unused_for > 2 * self.options.reload_interval_s)
            if replaced or unused_for > self.options.idle_unload_s:
                del self._served[key]
                self._retired.discard(key)
                await served.batcher.close(drain=True)
                log.info("%s %s unloaded", *key)

    def _retry_due(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` may be loaded now: it never failed, or its backoff is over."""
        failure = self._failed.get(key)
        return failure is None or self._clock() >= failure.retry_at

    # --- lookup ---------------------------------------------------------------------

    async def get(self, name: str, ref: str | None = None) -> ServedVersion:
        """The version that serves ``name`` (its route), or the pinned ``ref``.

        Raises NotFoundError, VersionSunsetError (past sunset), ModelNotReadyError (still
        loading after ``load_wait_s``), StoreUnavailableError (cannot resolve a pin).
        """
        if self.pinned_model is not None and name != self.pinned_model:
            raise NotFoundError(f"model {name!r} is not served here")
        if ref is None:
            version = self.routes.get(name)
            if version is None:
                version = await self._unrouted(name)
        else:
            version = await self._resolve(name, ref)
        served = self._served.get((name, version))
        if served is None:
            served = await self._await_load((name, version))
        if served.version.sunset is not None and self._today() > served.version.sunset:
            raise VersionSunsetError(name, version, served.version.sunset.isoformat())
        served.last_used = time.monotonic()
        return served

    async def _unrouted(self, name: str) -> str:
        wanted = self._wanted.get(name)
        if wanted is not None:  # production version known but still loading
            return wanted
        if name in self._aliases:  # known model without a production version
            raise NoProductionVersionError(name)
        await self._lookup_model(name)  # raises ModelNotFoundError, or it is new
        await self.refresh(reread=True)
        if name in self._wanted:
            return self._wanted[name]
        raise NoProductionVersionError(name)

    async def _lookup_model(self, name: str) -> None:
        await asyncio.to_thread(self._registry.get_model, name)

    async def _resolve(self, name: str, ref: str) -> str:
        if SemVer.looks_like(ref):
            if (name, ref) in self._served:
                return ref
        elif ref in self._aliases.get(name, {}):
            return self._aliases[name][ref]
        mv = await asyncio.to_thread(self._registry.get_version, name, ref)
        return mv.version

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
        if self._wanted.get(key[0]) == key[1]:  # in the same step: never loaded unrouted
            self._switch(*key)
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
        log.warning("%s %s failed to load (attempt %d): %s; retrying in %g s", *key,
                    attempts, _one_line(detail), delay,
                    exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
        return VersionLoadFailedError(*key, failure.reason, delay)

    def _load_sync(self, name: str, version: str) -> ServedVersion:
        with LOAD_LOCK:
            return self._build(name, version)

    def _build(self, name: str, version: str) -> ServedVersion:
        # Imported here (it imports pandas), so that the server listens sooner.
        from modelhost.signature import InputValidator

        loaded = self._registry.load(name, version)
        mv = loaded.version
        validator = InputValidator(mv.signature) if mv.signature is not None else None
        served = ServedVersion(version=mv, model=loaded.model, validator=validator,
                               batcher=None,  # type: ignore[arg-type]  # set just below
                               load_seconds=0.0)
        if self.options.warmup and mv.input_example is not None and validator is not None:
            served.model.warm_up(validator.validate(mv.input_example))
            served.as_array = validator.numeric_block and served.model.accepts_array(
                [c.name for c in mv.signature.columns] if mv.signature else [])
        on_batch = self._on_batch

        def report(rows: int, requests: int, seconds: float) -> None:
            if on_batch is not None:
                on_batch(name, version, rows, requests, seconds)

        served.batcher = AdaptiveBatcher(
            served.run_batch, combine=_combine, max_batch_size=self.options.max_batch_size,
            max_wait_ms=self.options.max_wait_ms, max_queue_rows=self.options.max_queue_rows,
            name=f"{name} {version}", on_batch=report)
        return served

    # --- readiness ------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether the pool is ready for traffic, and the detail ``/readyz`` shows.

        Ready when the database answered at the last refresh and no model waits for its
        first version: each model with a production version serves one (its production
        version, or the previous one while the new one loads) or its production version
        failed to load. A failed version does not hold the others back: it is listed
        under ``failed`` with its reason and the time to its next retry, and is retried
        with backoff. ``loading`` lists the production versions not loaded yet (retries
        of failed ones are under ``failed``).
        """
        now = self._clock()
        failed: dict[str, dict[str, Any]] = {}
        loading: dict[str, str] = {}
        for name, version in self._wanted.items():
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
        waiting = [n for n in loading if n not in self.routes]
        detail = {"database": self.database_ok, "serving": dict(self.routes),
                  "loading": loading, "failed": failed}
        return self.database_ok and not waiting, detail

    async def wait_until_ready(self, *, timeout_s: float) -> bool:
        """Wait until no production version is loading for the first time any more (each
        has loaded or failed), at most ``timeout_s``; then return :meth:`ready`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            loading = [t for k, t in self._loading.items()
                       if self._wanted.get(k[0]) == k[1] and k not in self._failed]
            if not loading:
                break
            await asyncio.wait(loading, timeout=max(0.0, deadline - time.monotonic()))
        return self.ready()[0]

    def knows(self, name: str) -> bool:
        """Whether ``name`` was a registered model at the last refresh."""
        return name in self._aliases

    def production_version(self, name: str) -> str | None:
        """The production version in the database at the last refresh."""
        return self._wanted.get(name)

    def served(self) -> list[ServedVersion]:
        return list(self._served.values())

    def queued_rows(self) -> int:
        return sum(s.batcher.queued_rows for s in self._served.values())
