"""Live model quality: the metrics of the predictions that got feedback, per version and
time window, against the metrics the version was registered with (concept drift).

Classification (the model has probabilities, or predicts strings, booleans or integers):
accuracy, precision, recall, F1 (of the positive class for two classes, macro averages
for more) and ROC AUC (from the logged probabilities, when the column order of the
classes is known). Regression: MAE and RMSE. The numbers come from ``modelhost.stats``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelhost.stats import classification_metrics, is_classification, regression_metrics
from modelhost.store.monitoring import PredictionLogStore


@dataclass(frozen=True)
class Performance:
    model: str
    version: str
    start: dt.datetime
    end: dt.datetime
    requests: int  # requests logged in the window
    labelled: int  # rows with feedback
    task: str | None  # "classification", "regression", or None (nothing labelled)
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    at_registration: Mapping[str, float] = field(default_factory=dict)
    change: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """PRODUCT.md §3.8's shape (plus ``requests`` logged and ``task``); ``labelled``
        counts rows (a request may predict several)."""
        return {"model": self.model, "version": self.version,
                "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
                "requests": self.requests, "labelled": self.labelled,
                "task": self.task, "metrics": dict(self.metrics),
                "at_registration": dict(self.at_registration), "change": dict(self.change)}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def window_ending(end: dt.datetime, span: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """[end - span, end), starting no earlier than 1970 (nothing is older, and a span of
    thousands of years would not fit a datetime)."""
    return max(_EPOCH, end - min(span, end - _EPOCH)), end


def performance(store: PredictionLogStore, *, model: str, version: str, start: dt.datetime,
                end: dt.datetime, registered: Mapping[str, float] | None = None,
                classes: Sequence[Any] | None = None) -> Performance:
    """The live metrics of ``model`` ``version`` over [start, end).

    ``registered`` are the version's metrics at registration; those with the name of a
    live metric (``accuracy``, ``f1``, ``mae``, ...) are compared. ``classes`` is the
    order of the model's probability columns (the loaded model knows it); without it,
    the sorted classes are assumed when their number matches the columns (scikit-learn's
    order), else ROC AUC is not computed.
    """
    logged, pairs = store.labelled(model, version, start=start, end=end)
    y_true: list[Any] = []
    y_pred: list[Any] = []
    proba: list[Any] = []
    every_row_has_proba = True
    for outputs, labels in pairs:
        predicted = outputs.get("predictions") if isinstance(outputs, dict) else None
        if not isinstance(predicted, list) or not isinstance(labels, list) or len(
                predicted) != len(labels) or any(isinstance(p, list) for p in predicted):
            continue  # multi-output rows have no metrics here
        y_pred.extend(predicted)
        y_true.extend(labels)
        rows = outputs.get("probabilities")
        if isinstance(rows, list) and len(rows) == len(predicted):
            proba.extend(rows)
        else:
            every_row_has_proba = False
    if not y_true:
        return Performance(model, version, start, end, logged, 0, None)
    has_proba = every_row_has_proba and bool(proba)
    metrics: dict[str, float | None]
    if is_classification(y_pred, has_proba):
        task = "classification"
        order = _classes(classes, y_true, y_pred, proba) if has_proba else None
        metrics = classification_metrics(y_true, y_pred, proba=proba if order else None,
                                         classes=order)
    else:
        task = "regression"
        metrics = regression_metrics(y_true, y_pred)
    known = {k: float(v) for k, v in (registered or {}).items() if k in metrics}
    change = {k: metrics[k] - known[k] for k in known  # type: ignore[operator]
              if metrics[k] is not None}
    return Performance(model, version, start, end, logged, len(y_true), task, metrics,
                       known, change)


def _classes(given: Sequence[Any] | None, y_true: list[Any], y_pred: list[Any],
             proba: list[Any]) -> list[Any] | None:
    columns = len(proba[0]) if proba and isinstance(proba[0], list) else 0
    if given is not None:
        return list(given) if len(given) == columns else None
    seen = set(y_true) | set(y_pred)
    try:
        ordered = sorted(seen)
    except TypeError:  # mixed kinds cannot be ordered
        return None
    return ordered if len(ordered) == columns else None
