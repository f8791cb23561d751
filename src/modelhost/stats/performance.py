"""Model quality from labelled predictions: classification and regression metrics.

Pure numpy, no I/O. The definitions follow scikit-learn's so that a number shown by the
monitor is the number a data scientist gets offline: ``precision_score`` and friends with
``average="binary"`` (two classes) or ``average="macro", zero_division=0`` (more), and
``roc_auc_score`` with ``multi_class="ovr", average="macro"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_CLASSIFICATION_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc")

_IntArray = npt.NDArray[np.intp]
_FloatArray = npt.NDArray[np.float64]


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    proba: Sequence[Sequence[float]] | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 and ROC AUC of predicted labels against true ones.

    Labels may be any hashable JSON scalar (ints, strings, bools).

    * Two classes (exactly two among ``classes``, or among ``y_true`` ∪ ``y_pred`` when
      ``classes`` is None): precision, recall and F1 of the positive class, the second of
      the sorted classes, or ``classes[1]`` when ``classes`` is given (the order of the
      probability columns); like scikit-learn's ``pos_label=1`` for 0/1 labels.
    * Otherwise: macro averages over the classes present in ``y_true`` ∪ ``y_pred``, a
      class with nothing to divide by counting 0 (scikit-learn's ``average="macro",
      zero_division=0``).
    * ``roc_auc`` needs ``proba``, one column per class in ``classes`` order: with two
      classes the AUC of the positive column (ties count 1/2, as in Mann-Whitney U), with
      more the one-vs-rest macro average over the classes present in ``y_true``. It is None
      without ``proba``, when ``y_true`` holds a single class, or when ``y_true`` holds a
      label outside ``classes`` (a label the model cannot score).

    Labels found in the data but missing from ``classes`` count as further classes (after
    the given ones) for accuracy, precision, recall and F1.

    Args:
        y_true: the true labels.
        y_pred: the predicted labels, in the same order.
        proba: the predicted probabilities, one row per prediction, one column per class.
        classes: the model's classes, in the order of the probability columns.

    Returns:
        ``{"accuracy", "precision", "recall", "f1", "roc_auc"}`` as Python floats; every
        value None for empty input.

    Raises:
        ValueError: the lengths differ, ``proba`` comes without ``classes`` or has the
            wrong shape, or ``classes`` repeats a class.
    """
    n = len(y_true)
    if len(y_pred) != n:
        raise ValueError(f"y_true has {n} labels but y_pred has {len(y_pred)}; pass one "
                         "prediction per label")
    scores: _FloatArray | None = None
    if proba is not None:
        if classes is None:
            raise ValueError("proba needs classes: pass the class of each probability column")
        scores = np.asarray(proba, dtype=np.float64)
        if scores.shape != (n, len(classes)) and not (n == 0 and scores.size == 0):
            raise ValueError(f"proba has shape {scores.shape} but {n} predictions of "
                             f"{len(classes)} classes need shape {(n, len(classes))}")
    if n == 0:
        return dict.fromkeys(_CLASSIFICATION_KEYS, None)

    codes, n_classes, n_known = _encode([*y_true, *y_pred], classes)
    true, pred = codes[:n], codes[n:]

    true_count = np.bincount(true, minlength=n_classes)
    pred_count = np.bincount(pred, minlength=n_classes)
    hits = true == pred
    tp = np.bincount(true[hits], minlength=n_classes)
    precision = _divide(tp, pred_count)
    recall = _divide(tp, true_count)
    f1 = _divide(2 * tp, true_count + pred_count)

    if n_classes == 2:
        chosen: npt.NDArray[np.bool_] | slice = slice(1, 2)  # the positive class
    else:
        chosen = (true_count + pred_count) > 0  # macro over the classes present
    result: dict[str, float | None] = {
        "accuracy": float(np.mean(hits)),
        "precision": float(np.mean(precision[chosen])),
        "recall": float(np.mean(recall[chosen])),
        "f1": float(np.mean(f1[chosen])),
        "roc_auc": None,
    }
    if scores is not None:
        result["roc_auc"] = _roc_auc(true, scores, n_known)
    return result


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float | None]:
    """Mean absolute error and root mean squared error of predictions against true values.

    Returns:
        ``{"mae", "rmse"}`` as Python floats; both None for empty input.

    Raises:
        ValueError: the lengths differ.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}; "
                         "pass one prediction per value")
    if len(y_true) == 0:
        return {"mae": None, "rmse": None}
    error = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return {"mae": float(np.mean(np.abs(error))),
            "rmse": math.sqrt(float(np.mean(np.square(error))))}


def is_classification(predictions: Sequence[Any], has_proba: bool) -> bool:
    """Whether predictions are classes rather than quantities.

    True when the model gives probabilities, or when any prediction is a string, a bool or
    an integer (Python or numpy); floats alone, even whole ones, mean regression.
    """
    return has_proba or any(
        isinstance(value, (str, int, np.integer, np.bool_)) for value in predictions)


def _encode(labels: list[Any], classes: Sequence[Any] | None) -> tuple[_IntArray, int, int]:
    """Map labels to class indices.

    Returns the indices, the number of classes, and how many of them come from
    ``classes`` (the rest are labels found in the data, sorted, after the given ones).
    """
    uniques, inverse = _unique(labels)
    if classes is None:
        return inverse, len(uniques), len(uniques)
    index: dict[Any, int] = {}
    for position, value in enumerate(classes):
        if index.setdefault(value, position) != position:
            raise ValueError(f"classes repeats {value!r}; pass each class once")
    n_known = len(index)
    # Only the distinct labels go through Python; the per-row mapping stays in numpy.
    lookup = np.empty(len(uniques), dtype=np.intp)
    for position, value in enumerate(uniques):
        key = value.item() if isinstance(value, np.generic) else value
        lookup[position] = index.setdefault(key, len(index))
    return lookup[inverse], len(index), n_known


def _unique(labels: list[Any]) -> tuple[list[Any], _IntArray]:
    """The sorted distinct labels and each label's index among them."""
    values = np.asarray(labels)
    homogeneous = values.ndim == 1 and (
        values.dtype.kind in "biuf"
        # numpy turns a mix of strings and numbers into strings: keep "1" and 1 apart.
        or (values.dtype.kind == "U" and all(isinstance(v, str) for v in labels)))
    if homogeneous:
        uniques, inverse = np.unique(values, return_inverse=True)
        return list(uniques), inverse.reshape(-1).astype(np.intp, copy=False)
    # Mixed or unusual types (None, a string among numbers): hash them in Python.
    first_seen: dict[Any, int] = {}
    try:
        codes = [first_seen.setdefault(label, len(first_seen)) for label in labels]
    except TypeError as exc:
        raise ValueError("labels must be hashable scalars (ints, strings, bools)") from exc
    distinct = list(first_seen)
    try:
        ordered = sorted(distinct)
    except TypeError:
        ordered = sorted(distinct, key=lambda v: (type(v).__name__, repr(v)))
    position = {value: rank for rank, value in enumerate(ordered)}
    rank = np.array([position[v] for v in distinct], dtype=np.intp)
    return ordered, rank[np.asarray(codes, dtype=np.intp)]


def _divide(numerator: _IntArray, denominator: _IntArray) -> _FloatArray:
    """numerator / denominator elementwise, 0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _roc_auc(true: _IntArray, scores: _FloatArray, n_known: int) -> float | None:
    if np.any(true >= n_known):
        return None  # a true label the model has no probability column for
    present = np.flatnonzero(np.bincount(true, minlength=n_known))
    if len(present) < 2:
        return None
    if n_known == 2:
        return _binary_auc(true == 1, scores[:, 1])
    return float(np.mean([_binary_auc(true == c, scores[:, c]) for c in present]))


def _binary_auc(positive: npt.NDArray[np.bool_], score: _FloatArray) -> float:
    """The probability that a random positive scores above a random negative, ties 1/2."""
    n_pos = int(np.count_nonzero(positive))
    n_neg = len(positive) - n_pos
    ranks = _average_ranks(score)
    u = float(np.sum(ranks[positive])) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _average_ranks(values: _FloatArray) -> _FloatArray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mean_rank = ends - (counts - 1) / 2
    return mean_rank[inverse.reshape(-1)].astype(np.float64, copy=False)
