"""The metrics gates compute themselves: one table of names, directions and formulas.

Gates that compare models (``not_worse_than_production``, ``fairness``) score every model
with the same code on the same rows, so the comparison does not depend on how a step
happened to compute its own metrics. scikit-learn is imported on first use only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelhost.errors import InvalidInputError


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    needs_proba: bool = False
    classification: bool = True


_METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", True),
    Metric("balanced_accuracy", True),
    Metric("f1", True),
    Metric("precision", True),
    Metric("recall", True),
    Metric("selection_rate", True),
    Metric("roc_auc", True, needs_proba=True),
    Metric("log_loss", False, needs_proba=True),
    Metric("mae", False, classification=False),
    Metric("rmse", False, classification=False),
    Metric("r2", True, classification=False),
)}
_ALIASES = {"auc": "roc_auc", "tpr": "recall", "true_positive_rate": "recall"}


def metric_names() -> list[str]:
    return sorted(_METRICS) + sorted(_ALIASES)


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (``auc`` is ``roc_auc``).

    Raises:
        InvalidInputError: an unknown name; the message lists the known ones.
    """
    found = _METRICS.get(_ALIASES.get(name, name))
    if found is None:
        raise InvalidInputError(f"unknown metric {name!r}; known: {', '.join(metric_names())}")
    return found


def positive_label(labels: Sequence[Any]) -> Any:
    """The class that counts as positive in binary metrics: the largest label (1, True,
    'yes' > 'no'), as scikit-learn's defaults assume for 0/1 labels."""
    return sorted(labels, key=_sort_key)[-1]


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value) if not isinstance(value, int | float) else ("", value)


def compute(name: str, y_true: Any, *, predictions: Any, proba: Any = None,
            labels: Sequence[Any]) -> float:
    """``name`` of predictions against the truth.

    Args:
        labels: every class of the problem, in the order of ``proba``'s columns.

    Raises:
        InvalidInputError: the metric needs probabilities and ``proba`` is None, or the
            data does not allow it (one class only for AUC).
    """
    import numpy as np
    from sklearn import metrics as skm

    metric = get_metric(name)
    y = np.asarray(y_true)
    pred = np.asarray(predictions)
    if metric.needs_proba and proba is None:
        raise InvalidInputError(f"metric {metric.name!r} needs predicted probabilities and "
                                "the model has none (no predict_proba)")
    binary = len(labels) == 2
    pos = positive_label(labels) if binary else None
    average = "binary" if binary else "macro"
    try:
        if metric.name == "accuracy":
            return float(skm.accuracy_score(y, pred))
        if metric.name == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(y, pred))
        if metric.name in ("f1", "precision", "recall"):
            fn = {"f1": skm.f1_score, "precision": skm.precision_score,
                  "recall": skm.recall_score}[metric.name]
            kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
            if binary:
                kwargs["pos_label"] = pos
            else:
                kwargs["labels"] = list(labels)
            return float(fn(y, pred, **kwargs))
        if metric.name == "selection_rate":
            chosen = pos if binary else positive_label(labels)
            return float(np.mean(pred == chosen)) if len(pred) else 0.0
        if metric.name == "roc_auc":
            scores = np.asarray(proba)
            if binary:
                column = list(labels).index(pos)
                return float(skm.roc_auc_score(y == pos, scores[:, column]))
            return float(skm.roc_auc_score(y, scores, multi_class="ovr", labels=list(labels)))
        if metric.name == "log_loss":
            return float(skm.log_loss(y, np.asarray(proba), labels=list(labels)))
        if metric.name == "mae":
            return float(skm.mean_absolute_error(y, pred))
        if metric.name == "rmse":
            return float(np.sqrt(skm.mean_squared_error(y, pred)))
        return float(skm.r2_score(y, pred))
    except ValueError as exc:
        raise InvalidInputError(f"metric {metric.name!r} cannot be computed on these rows: "
                                f"{_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


__all__ = ["Metric", "compute", "get_metric", "metric_names", "positive_label"]
