"""Protocol-independent prediction: resolve the version, validate, cache, batch.

Every wire protocol (v1, Open Inference v2, MLflow scoring) turns its body into a
payload and calls :meth:`Predictor.predict`; only the encoding differs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelhost.errors import InvalidInputError, PayloadTooLargeError
from modelhost.serving.cache import PredictionCache, cache_key
from modelhost.serving.metrics import Metrics
from modelhost.serving.pool import ModelPool, ServedVersion


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 1024 * 1024 * 1024  # model uploads, also their unpacked size
    max_upload_files: int = 10_000
    max_rows: int = 10_000
    timeout_s: float = 30.0


@dataclass
class Prediction:
    served: ServedVersion
    predictions: Any  # numpy array, or a list when it came from the cache
    probabilities: Any
    cached: bool = False


class Predictor:
    def __init__(self, pool: ModelPool, *, metrics: Metrics, limits: Limits,
                 cache: PredictionCache | None = None) -> None:
        self.pool = pool
        self.metrics = metrics
        self.limits = limits
        self.cache = cache
        self._depth: dict[tuple[str, str], _Depth] = {}

    async def predict(self, name: str, ref: str | None, payload: Any,
                      params: Mapping[str, Any] | None, *,
                      timeout_s: float | None = None) -> Prediction:
        """Raises the modelhost errors of PRODUCT.md §3.6; never anything else on bad input."""
        if params is not None and not isinstance(params, dict):
            raise InvalidInputError("'params' must be a JSON object")
        rows = _count_rows(payload)
        if rows > self.limits.max_rows:
            raise PayloadTooLargeError("the batch", self.limits.max_rows, "rows")
        served = await self.pool.get(name, ref)
        labels = served.key
        key = None
        if self.cache is not None and name in self.pool.cached_models:
            key = cache_key(served.version.artifact_digest, payload, params)
            hit = await self.cache.get(key)
            if hit is not None:
                self.metrics.cache_hits.labels(*labels).inc()
                data = orjson.loads(hit)
                return Prediction(served, data["p"], data.get("q"), cached=True)
            self.metrics.cache_misses.labels(*labels).inc()
        inputs = (served.validator.validate(payload, as_array=served.as_array)
                  if served.validator else _raw(payload))
        n = len(inputs) if hasattr(inputs, "__len__") and not isinstance(inputs, dict) else rows
        self._track(labels, n)
        try:
            predictions, probabilities, nonfinite = await served.batcher.submit(
                inputs, rows=n, params=params or {},
                timeout_s=timeout_s or self.limits.timeout_s)
        finally:
            self._track(labels, -n)
        if nonfinite is not None and nonfinite.any():
            # A model fed finite but extreme inputs can overflow to NaN/inf, which JSON
            # (and the documented responses) cannot carry: refuse these inputs instead.
            raise InvalidInputError("the model gives no finite result for these inputs "
                                    "(values too large in magnitude?)")
        if key is not None and self.cache is not None:
            value = {"p": predictions, "q": probabilities}
            await self.cache.set(key, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
        return Prediction(served, predictions, probabilities)


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


def _raw(payload: Any) -> Any:
    """Input for a version registered without a signature: a 2-D array of numbers."""
    try:
        array = np.asarray(payload, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(
            "this version has no signature, so 'inputs' must be a list of rows of numbers"
        ) from None
    if array.ndim != 2:
        raise InvalidInputError("'inputs' must be a list of rows of numbers")
    return array

