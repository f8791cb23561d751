"""The drift and live-quality gauges on /metrics (``Metrics.publish_health``): set from
each pass's measurements, NaN for a series no longer measured (a version no longer
served, or another process measures now), so that no stale number stays exported."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from modelhost.monitoring.alerts import Health
from modelhost.serving.metrics import Metrics


def exported(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if s.name.startswith(("modelhost_drift", "modelhost_dataset", "modelhost_profiled",
                                  "modelhost_model_quality", "modelhost_labelled"))}


def key(name: str, version: str, metric: str | None = None
        ) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {"model": "iris", "version": version, **({"metric": metric} if metric else {})}
    return name, tuple(sorted(labels.items()))


def test_measurements_become_gauges_and_stale_ones_nan() -> None:
    metrics = Metrics()
    stable = Health("iris", "1.0.0", drift_share=0.25, dataset_drift=False, profiled=400,
                    quality={"accuracy": 0.9, "f1": 0.88}, change={"accuracy": -0.05},
                    labelled=120)
    candidate = Health("iris", "1.1.0", drift_share=0.5, dataset_drift=True, profiled=40)
    metrics.publish_health([stable, candidate])
    assert exported(metrics) == {
        key("modelhost_drift_share", "1.0.0"): 0.25,
        key("modelhost_dataset_drift", "1.0.0"): 0.0,
        key("modelhost_profiled_rows", "1.0.0"): 400.0,
        key("modelhost_model_quality", "1.0.0", "accuracy"): 0.9,
        key("modelhost_model_quality", "1.0.0", "f1"): 0.88,
        key("modelhost_model_quality_change", "1.0.0", "accuracy"): -0.05,
        key("modelhost_labelled_rows", "1.0.0"): 120.0,
        key("modelhost_drift_share", "1.1.0"): 0.5,
        key("modelhost_dataset_drift", "1.1.0"): 1.0,
        key("modelhost_profiled_rows", "1.1.0"): 40.0,
    }  # no quality for the candidate: nothing labelled yet

    # The candidate is gone, the stable version lost its feedback: those series are NaN.
    metrics.publish_health([Health("iris", "1.0.0", drift_share=0.0, dataset_drift=False,
                                   profiled=500)])
    now = exported(metrics)
    assert now[key("modelhost_drift_share", "1.0.0")] == 0.0
    stale = {k for k, v in now.items() if math.isnan(v)}
    assert stale == {key("modelhost_drift_share", "1.1.0"),
                     key("modelhost_dataset_drift", "1.1.0"),
                     key("modelhost_profiled_rows", "1.1.0"),
                     key("modelhost_model_quality", "1.0.0", "accuracy"),
                     key("modelhost_model_quality", "1.0.0", "f1"),
                     key("modelhost_model_quality_change", "1.0.0", "accuracy"),
                     key("modelhost_labelled_rows", "1.0.0")}

    # Another process holds the lease now: everything this one exported is NaN.
    metrics.publish_health(None)
    assert all(math.isnan(v) for v in exported(metrics).values())
    metrics.publish_health(None)  # and stays so, without new series
    assert len(exported(metrics)) == 10
