"""Protocol-independent prediction: choose the version, validate, cache, batch.

Every wire protocol (v1, Open Inference v2, MLflow scoring) resolves the version once
with :meth:`Predictor.resolve`, turns its body into a payload and calls
:meth:`Predictor.predict`; only the encoding differs. No handler touches the pool.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelhost.entities import SemVer
from modelhost.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from modelhost.registry import Registry
from modelhost.registry.scoring import check_finite, check_sunset
from modelhost.rollout import ArmRole, Routing, choose, shadowed
from modelhost.serving.cache import PredictionCache, cache_key
from modelhost.serving.metrics import Metrics
from modelhost.serving.pool import ModelPool, ServedVersion
from modelhost.serving.shadow import ShadowRunner
from modelhost.serving.watcher import RoutingWatcher


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 1024 * 1024 * 1024  # model uploads, also their unpacked size
    max_upload_files: int = 10_000
    max_rows: int = 10_000
    timeout_s: float = 30.0


class NoProductionVersionError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} has no production version; pin one with the "
                         "X-Model-Version header or the /versions/{version} route")


@dataclass(slots=True)  # one per request: frozen dataclasses are slower to build
class Resolved:
    """The version one request is served by, and why: the arm the router chose (None
    when the caller pinned the version) and the shadow version it is also sent to."""

    served: ServedVersion
    arm: ArmRole | None = None
    shadow: str | None = None


@dataclass
class Prediction:
    served: ServedVersion
    predictions: Any  # numpy array, or a list when it came from the cache
    probabilities: Any
    rows: int
    arm: ArmRole | None = None
    cached: bool | None = None  # None: the model's answers are not cached
    inputs: Any = None  # the validated inputs, kept when an observer asks for them
    features: list[dict[str, Any]] | None = None  # looked up (bound versions only)


@dataclass
class Trace:
    """What one request went through, filled in by its protocol handler as it goes (so
    that the observers learn the version even of a request that failed after it)."""

    resolved: Resolved | None = None
    prediction: Prediction | None = None


class Predictor:
    """The one place that chooses the version of a request, and predicts with it."""

    def __init__(self, pool: ModelPool, watcher: RoutingWatcher, registry: Registry, *,
                 metrics: Metrics, limits: Limits, cache: PredictionCache | None = None,
                 keep_inputs: bool = False,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        """``keep_inputs``: an observer wants the validated inputs of each prediction."""
        self.pool = pool
        self.watcher = watcher
        self._registry = registry
        self.metrics = metrics
        self.limits = limits
        self.cache = cache
        self._today = today
        self.keep_inputs = keep_inputs
        self._only = watcher.only
        self._active = pool.active_routings  # read on every request: no method call
        self._depth: dict[tuple[str, str], _Depth] = {}
        # Copies of shadowed requests (the server sets it; None: shadows get nothing).
        self.shadows: ShadowRunner | None = None

    # --- choosing the version ---------------------------------------------------------

    async def resolve(self, name: str, pin: str | None = None,
                      routing_key: str | None = None) -> Resolved:
        """The loaded version that serves this request: the pinned version or alias, or
        else the arm the router picks from the model's routing (sticky per
        ``routing_key``). Waits for a version still loading (up to the pool's
        ``load_wait_s``).

        Raises NotFoundError (model, version or production version), VersionSunsetError,
        ModelNotReadyError, StoreUnavailableError (a pin the table cannot resolve).
        """
        only = self._only
        if only is not None and name != only:
            raise NotFoundError(f"model {name!r} is not served here")
        if pin is None:
            routing = self._active.get(name) or await self._table_routing(name)
            arm = choose(routing, routing_key)
            served = await self.pool.get(name, arm.version)
            shadow = (routing.shadow.version if routing.shadow is not None
                      and shadowed(routing, routing_key) else None)
            resolved = Resolved(served, arm.role, shadow)
        else:
            served = await self.pool.get(name, await self._pinned(name, pin))
            resolved = Resolved(served)
        if served.version.sunset is not None:  # most versions have none: skip the clock
            check_sunset(served.version, self._today())
        return resolved

    async def _table_routing(self, name: str) -> Routing:
        """The routing of a model that takes no traffic yet: the table's (its versions
        still loading), or, for a model the table does not know, the database's."""
        table = self.watcher.table
        if name not in table.models:
            await self.watcher.discover(name)  # raises ModelNotFoundError
            table = self.watcher.table
        routing = table.routing(name)
        if routing is None:
            raise NoProductionVersionError(name)
        return routing

    async def _pinned(self, name: str, ref: str) -> str:
        """The version a pin names: a loaded version or a known alias without a query,
        anything else (``latest``, ``@staging``, an unloaded version) from the registry."""
        if SemVer.looks_like(ref):
            if self.pool.loaded(name, ref):
                return ref
        else:
            entry = self.watcher.table.models.get(name)
            if entry is not None and ref in entry.aliases:
                return entry.aliases[ref]
        mv = await asyncio.to_thread(self._registry.get_version, name, ref)
        return mv.version

    # --- predicting -------------------------------------------------------------------

    def check(self, payload: Any, params: Any) -> int:
        """The rows of a payload, refused when it is no table or batch, is too large, or
        ``params`` is no object. Cheap: handlers call it before choosing a version too,
        so that bad input never waits for a model to load."""
        if params is not None and not isinstance(params, dict):
            raise InvalidInputError("'params' must be a JSON object")
        rows = _count_rows(payload)
        if rows > self.limits.max_rows:
            raise PayloadTooLargeError("the batch", self.limits.max_rows, "rows")
        return rows

    async def predict(self, resolved: Resolved, payload: Any,
                      params: Mapping[str, Any] | None, *, timeout_s: float | None = None,
                      rows: int | None = None) -> Prediction:
        """Raises the modelhost errors of PRODUCT.md §3.6; never anything else on bad input.
        ``rows``: what :meth:`check` said of this payload, when the handler called it."""
        if rows is None:
            rows = self.check(payload, params)
        served = resolved.served
        scorer = served.scorer
        features = None
        if served.features is not None:  # the rows' features, before the cache's key
            payload, features = await served.features.assemble(payload)
        key = None
        entry = self.watcher.table.models.get(served.version.model)
        if self.cache is not None and entry is not None and entry.cached:
            key = cache_key(served.version.artifact_digest, payload, params)
            hit = await self.cache.get(key)
            if hit is not None:
                data = orjson.loads(hit)
                inputs = (scorer.prepare(payload, numeric_rows_only=True)
                          if self.keep_inputs else None)
                return Prediction(served, data["p"], data.get("q"), rows, resolved.arm,
                                  cached=True, inputs=inputs, features=features)
        # Inputs of several requests are combined into one model call: one shape for all.
        inputs = scorer.prepare(payload, numeric_rows_only=True)
        n = len(inputs) if hasattr(inputs, "__len__") and not isinstance(inputs, dict) else rows
        labels = served.key
        self._track(labels, n)
        try:
            predictions, probabilities, nonfinite = await served.batcher.submit(
                inputs, rows=n, params=params or {},
                timeout_s=timeout_s or self.limits.timeout_s)
        finally:
            self._track(labels, -n)
        # A model fed finite but extreme inputs can overflow to NaN/inf, which JSON
        # (and the documented responses) cannot carry: refuse these inputs instead.
        if nonfinite is not None:
            check_finite(nonfinite)
        if key is not None and self.cache is not None:
            value = {"p": predictions, "q": probabilities}
            await self.cache.set(key, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
        if resolved.shadow is not None and self.shadows is not None:
            self.shadows.send(served.version.model, served.version.version, resolved.shadow,
                              payload, params, predictions)
        return Prediction(served, predictions, probabilities, n, resolved.arm,
                          cached=False if key is not None else None,
                          inputs=inputs if self.keep_inputs else None, features=features)

    def _track(self, labels: tuple[str, str], rows: int) -> None:
        """Rows waiting for or inside the model. The gauge is a metric in shared memory
        with several workers: it is written at most every 0.1 s per version (and
        whenever the queue empties), not twice per request."""
        depth = self._depth.get(labels)
        if depth is None:
            depth = self._depth[labels] = _Depth()
        depth.rows += rows
        now = time.monotonic()
        if depth.rows == 0 or now - depth.published >= _GAUGE_EVERY_S:
            depth.published = now
            self.metrics.queue_gauge(*labels).set(depth.rows)


_GAUGE_EVERY_S = 0.1


@dataclass
class _Depth:
    rows: int = 0
    published: float = float("-inf")


def _count_rows(payload: Any) -> int:
    if isinstance(payload, list):
        return len(payload)
    if isinstance(payload, dict):
        for column in payload.values():
            return len(column) if isinstance(column, list | np.ndarray) else 1
        return 0
    if isinstance(payload, np.ndarray):
        return int(payload.shape[0]) if payload.ndim else 1
    raise InvalidInputError("'inputs' must be a list of records or an object of columns")
