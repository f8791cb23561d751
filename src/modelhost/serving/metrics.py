"""Prometheus metrics, correct across worker processes.

With several workers, ``modelhost serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before the workers start; prometheus-client then keeps each process's samples in
memory-mapped files and ``/metrics`` (answered by any worker) aggregates them all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelhost.monitoring.alerts import Health
    from modelhost.serving.observers import Observation

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """The server's metrics, in their own registry (never the process-global one).

    Per-request figures come from :meth:`observe`, as an observer of the prediction
    path; batch sizes, queue depth and load times from the pool and the predictor."""

    name = "metrics"
    wants_data = False

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._queue_children: dict[tuple[str, str], Any] = {}
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version")
        self.requests = Counter("modelhost_requests_total", "Prediction requests answered.",
                                (*labels, "protocol", "status"), registry=self.registry)
        self.errors = Counter("modelhost_errors_total", "Failed requests by error code.",
                              (*labels, "code"), registry=self.registry)
        self.latency = Histogram("modelhost_request_duration_seconds",
                                 "Time from request to response.", (*labels, "protocol"),
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("modelhost_predicted_rows_total", "Rows predicted.", labels,
                            registry=self.registry)
        self.batch_rows = Histogram("modelhost_batch_size_rows",
                                    "Rows per model call after batching.", labels,
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("modelhost_batch_size_requests",
                                        "Requests coalesced into one model call.", labels,
                                        buckets=_BATCH_BUCKETS, registry=self.registry)
        self.queue_rows = Gauge("modelhost_queue_depth_rows", "Rows waiting for the model.",
                                labels, multiprocess_mode="livesum", registry=self.registry)
        self.cache_hits = Counter("modelhost_cache_hits_total", "Prediction cache hits.",
                                  labels, registry=self.registry)
        self.cache_misses = Counter("modelhost_cache_misses_total",
                                    "Prediction cache misses.", labels, registry=self.registry)
        self.load_seconds = Histogram("modelhost_model_load_seconds",
                                      "Time to fetch, verify, load and warm a version.",
                                      labels, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                      registry=self.registry)
        # 1 while a version this server should serve failed to load (it is retried with
        # backoff), 0 once it loads; the largest over the workers.
        self.load_failed = Gauge("modelhost_model_load_failed",
                                 "1 while a version to serve failed to load (retried).",
                                 labels, multiprocess_mode="livemax", registry=self.registry)
        self.observer_errors = Counter("modelhost_observer_errors_total",
                                       "Observers of the prediction path that raised.",
                                       ("observer",), registry=self.registry)
        # Drift and live quality of every served version over the metrics window (an
        # hour), measured by whichever process holds the alerts lease (the others export
        # NaN, which PromQL's max() skips): the most recent value of a live process wins.
        health: dict[str, Any] = {"multiprocess_mode": "livemostrecent",
                                  "registry": self.registry}
        self.drift_share = Gauge("modelhost_drift_share", "Share of the features whose "
                                 "live distribution drifted from the reference (metrics window).",
                                 labels, **health)
        self.dataset_drift = Gauge("modelhost_dataset_drift", "1 when the share of drifted "
                                   "features passes the dataset threshold, else 0.",
                                   labels, **health)
        self.profiled_rows = Gauge("modelhost_profiled_rows", "Rows profiled against the "
                                   "reference in the drift window.", labels, **health)
        self.quality = Gauge("modelhost_model_quality", "Live quality from feedback "
                             "(accuracy, f1, roc_auc, mae, rmse, ...; metrics window).",
                             (*labels, "metric"), **health)
        self.quality_change = Gauge("modelhost_model_quality_change", "Live quality "
                                    "minus the quality the version was registered with.",
                                    (*labels, "metric"), **health)
        self.labelled_rows = Gauge("modelhost_labelled_rows", "Rows with feedback in the "
                                   "quality window.", labels, **health)
        self._health_children: set[tuple[Any, tuple[str, ...]]] = set()
        # Streams scored by this server (modelhost stream, MODELHOST_STREAMS): the
        # events of a consumer group not yet scored, and what became of those read.
        stream_labels = ("model", "stream", "group")
        self.stream_lag = Gauge("modelhost_stream_lag", "Events of a stream the consumer "
                                "group has not finished: unread, or read and not yet "
                                "acknowledged.", stream_labels,
                                multiprocess_mode="livemax", registry=self.registry)
        self.stream_events = Counter("modelhost_stream_events_total", "Events read from "
                                     "a stream, by outcome (scored, dead_letter).",
                                     (*stream_labels, "outcome"), registry=self.registry)
        # The feature store: how old each view's online values may be (the end of its
        # last materialization), read when metrics are scraped.
        self.feature_freshness = Gauge("modelhost_feature_freshness_seconds", "Seconds "
                                       "since the end of the feature view's last "
                                       "materialization.", ("view",), **health)

    def on_batch(self, model: str, version: str, rows: int, requests: int,
                 _seconds: float) -> None:
        self.batch_rows.labels(model, version).observe(rows)
        self.batch_requests.labels(model, version).observe(requests)
        self.rows.labels(model, version).inc(rows)

    def queue_gauge(self, model: str, version: str) -> Any:
        """The queue-depth child of one version (cached: it changes per request)."""
        key = (model, version)
        child = self._queue_children.get(key)
        if child is None:
            child = self._queue_children[key] = self.queue_rows.labels(model, version)
        return child

    def observe(self, o: Observation) -> None:
        """One answered prediction request: its count and latency, its error code, and
        the cache's hit or miss."""
        model = o.model or "-"
        version = o.version or "-"
        protocol = o.route.protocol
        self.observe_request(model, version, protocol.value if protocol else "-", o.status,
                             o.latency_s)
        if o.error_code is not None:
            self.errors.labels(model, version, o.error_code).inc()
        if o.cached is not None:
            (self.cache_hits if o.cached else self.cache_misses).labels(model, version).inc()

    def observer_failed(self, name: str) -> None:
        self.observer_errors.labels(name).inc()

    def observe_request(self, model: str, version: str, protocol: str, status: int,
                        seconds: float) -> None:
        """One answered prediction request (label children cached: the hot path)."""
        key = (model, version, protocol, status)
        children = self._request_children.get(key)
        if children is None:
            if len(self._request_children) > 10_000:  # bound the cache, not the metrics
                self._request_children.clear()
            children = (self.requests.labels(model, version, protocol, str(status)),
                        self.latency.labels(model, version, protocol))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def on_load(self, model: str, version: str, seconds: float) -> None:
        self.load_seconds.labels(model, version).observe(seconds)
        self.load_failed.labels(model, version).set(0)

    def publish_freshness(self, ages: Mapping[str, float]) -> None:
        """Seconds since the end of each feature view's last materialization."""
        for view, age in ages.items():
            self.feature_freshness.labels(view).set(age)

    def on_load_failed(self, model: str, version: str) -> None:
        self.load_failed.labels(model, version).set(1)

    def publish_health(self, readings: Sequence[Health] | None) -> None:
        """Set the drift and quality gauges to ``readings``; a series not among them
        (a version no longer served, a metric gone, or None: another process measures)
        becomes NaN."""
        fresh: dict[tuple[Any, tuple[str, ...]], float] = {}
        for h in readings or ():
            key = (h.model, h.version)
            if h.drift_share is not None:
                fresh[(self.drift_share, key)] = h.drift_share
                fresh[(self.dataset_drift, key)] = float(bool(h.dataset_drift))
                fresh[(self.profiled_rows, key)] = float(h.profiled)
            if h.labelled:
                fresh[(self.labelled_rows, key)] = float(h.labelled)
                for metric, value in h.quality.items():
                    fresh[(self.quality, (*key, metric))] = value
                for metric, value in h.change.items():
                    fresh[(self.quality_change, (*key, metric))] = value
        for gauge, labels in self._health_children - fresh.keys():
            gauge.labels(*labels).set(math.nan)
        for (gauge, labels), value in fresh.items():
            gauge.labels(*labels).set(value)
        self._health_children = set(fresh)

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric of every worker."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry: Any = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
