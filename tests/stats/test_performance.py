"""Quality metrics agree with scikit-learn's on random data (30 seeds per case, with ties),
and behave on the edges: empty input, a single true class, a class never predicted,
mismatched lengths."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from modelhost.stats import classification_metrics, is_classification, regression_metrics

SEEDS = range(30)
TOLERANCE = 1e-12
CLASS_SETS = {
    "binary-int": [0, 1],
    "binary-str": ["no", "yes"],
    "three-int": [0, 1, 2],
    "three-str": ["bird", "cat", "dog"],
}


def _sample(rng: np.random.Generator, classes: list[Any], *, ties: bool
            ) -> tuple[list[Any], list[Any], list[list[float]]]:
    n = int(rng.integers(20, 120))
    k = len(classes)
    proba = rng.dirichlet(np.ones(k), size=n)
    if ties:
        # Probabilities to one decimal that still sum to 1 (sklearn checks it for
        # multiclass): many equal scores.
        proba = np.array([rng.multinomial(10, row) for row in proba]) / 10
    # Every class appears among the true labels; predictions follow the probabilities
    # loosely, so some are right and some wrong.
    true_idx = np.concatenate([np.arange(k), rng.integers(0, k, size=n - k)])
    rng.shuffle(true_idx)
    pred_idx = np.where(rng.random(n) < 0.6, true_idx, rng.integers(0, k, size=n))
    y_true = [classes[i] for i in true_idx]
    y_pred = [classes[i] for i in pred_idx]
    return y_true, y_pred, proba.tolist()


def _sklearn(y_true: list[Any], y_pred: list[Any], proba: list[list[float]] | None,
             classes: list[Any]) -> dict[str, float | None]:
    if len(classes) == 2:
        options: dict[str, Any] = {"average": "binary", "pos_label": classes[1]}
    else:
        present = sorted(set(y_true) | set(y_pred))
        options = {"average": "macro", "labels": present}
    expected: dict[str, float | None] = {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, zero_division=0, **options),
        "recall": recall_score(y_true, y_pred, zero_division=0, **options),
        "f1": f1_score(y_true, y_pred, zero_division=0, **options),
        "roc_auc": None,
    }
    if proba is not None:
        scores = np.asarray(proba)
        if len(classes) == 2:
            positive = [label == classes[1] for label in y_true]
            expected["roc_auc"] = roc_auc_score(positive, scores[:, 1])
        else:
            expected["roc_auc"] = roc_auc_score(y_true, scores, multi_class="ovr",
                                                average="macro", labels=classes)
    return expected


def _assert_close(actual: dict[str, float | None], expected: dict[str, float | None]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        got = actual[key]
        if value is None:
            assert got is None, key
        else:
            assert type(got) is float, (key, type(got))
            assert abs(got - float(value)) <= TOLERANCE, (key, got, value)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("with_proba", [False, True], ids=["labels", "proba"])
@pytest.mark.parametrize("case", list(CLASS_SETS))
def test_classification_matches_sklearn(case: str, with_proba: bool, ties: bool) -> None:
    classes = CLASS_SETS[case]
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        y_true, y_pred, proba = _sample(rng, classes, ties=ties)
        expected = _sklearn(y_true, y_pred, proba if with_proba else None, classes)
        if with_proba:
            actual = classification_metrics(y_true, y_pred, proba=proba, classes=classes)
        else:
            # Without classes, the positive class is the second of the sorted labels.
            actual = classification_metrics(y_true, y_pred)
        _assert_close(actual, expected)


def test_classification_given_classes_match_inferred_ones() -> None:
    rng = np.random.default_rng(7)
    y_true, y_pred, _ = _sample(rng, ["no", "yes"], ties=False)
    assert classification_metrics(y_true, y_pred, classes=["no", "yes"]) == \
        classification_metrics(y_true, y_pred)


def test_positive_class_follows_given_class_order() -> None:
    y_true = ["yes", "yes", "no", "no", "no"]
    y_pred = ["yes", "no", "no", "no", "yes"]
    proba = [[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.7, 0.3], [0.4, 0.6]]
    flipped = [[b, a] for a, b in proba]
    actual = classification_metrics(y_true, y_pred, proba=flipped, classes=["yes", "no"])
    expected = _sklearn(y_true, y_pred, None, ["yes", "no"])
    expected["roc_auc"] = roc_auc_score([t == "no" for t in y_true], [row[1] for row in flipped])
    _assert_close(actual, expected)


def test_empty_input_gives_none_everywhere() -> None:
    expected = dict.fromkeys(["accuracy", "precision", "recall", "f1", "roc_auc"])
    assert classification_metrics([], []) == expected
    assert classification_metrics([], [], proba=[], classes=[0, 1]) == expected
    assert regression_metrics([], []) == {"mae": None, "rmse": None}


def test_single_true_class_has_accuracy_but_no_auc() -> None:
    y_true = [1, 1, 1, 1]
    y_pred = [1, 0, 1, 1]
    proba = [[0.1, 0.9], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]]
    actual = classification_metrics(y_true, y_pred, proba=proba, classes=[0, 1])
    _assert_close(actual, _sklearn(y_true, y_pred, None, [0, 1]))
    assert actual["accuracy"] == 0.75
    assert actual["roc_auc"] is None

    three = classification_metrics(["a", "a"], ["a", "b"], proba=[[0.5, 0.3, 0.2]] * 2,
                                   classes=["a", "b", "c"])
    assert three["accuracy"] == 0.5
    assert three["roc_auc"] is None


def test_class_never_predicted_counts_zero_like_sklearn() -> None:
    y_true = [0, 1, 2, 2, 1, 0, 2]
    y_pred = [0, 1, 1, 1, 1, 0, 1]  # 2 is never predicted: its precision divides by zero
    _assert_close(classification_metrics(y_true, y_pred), _sklearn(y_true, y_pred, None,
                                                                   [0, 1, 2]))
    binary = classification_metrics(["no", "yes", "yes"], ["no", "no", "no"])
    assert binary["precision"] == 0.0
    assert binary["recall"] == 0.0
    assert binary["f1"] == 0.0


def test_multiclass_auc_averages_classes_present_in_y_true() -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(3), size=40)
    y_true = [int(i) for i in rng.integers(0, 2, size=40)]  # class 2 never true
    y_pred = [int(i) for i in np.argmax(proba, axis=1)]
    actual = classification_metrics(y_true, y_pred, proba=proba.tolist(), classes=[0, 1, 2])
    per_class = [roc_auc_score([t == c for t in y_true], proba[:, c]) for c in (0, 1)]
    assert actual["roc_auc"] == pytest.approx(float(np.mean(per_class)), abs=TOLERANCE)


def test_label_outside_classes_counts_as_a_class_without_auc() -> None:
    actual = classification_metrics(["a", "b", "z"], ["a", "b", "b"],
                                     proba=[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]],
                                     classes=["a", "b"])
    _assert_close(actual, _sklearn(["a", "b", "z"], ["a", "b", "b"], None, ["a", "b", "z"]))


def test_mixed_label_types_stay_apart() -> None:
    actual = classification_metrics([1, "1", 1, "1"], [1, 1, "1", "1"])
    assert actual["accuracy"] == 0.5


def test_bool_labels() -> None:
    y_true = [True, False, True, True, False]
    y_pred = [True, True, False, True, False]
    _assert_close(classification_metrics(y_true, y_pred),
                  _sklearn(y_true, y_pred, None, [False, True]))


@pytest.mark.parametrize(("args", "kwargs"), [
    (([0, 1], [0]), {}),
    (([0, 1], [0, 1]), {"proba": [[0.5, 0.5]], "classes": [0, 1]}),
    (([0, 1], [0, 1]), {"proba": [[0.5, 0.5], [0.5, 0.5]]}),
    (([0, 1], [0, 1]), {"proba": [[1.0], [0.0]], "classes": [0, 1]}),
    (([0, 1], [0, 1]), {"classes": [0, 0]}),
], ids=["lengths", "proba-rows", "proba-without-classes", "proba-columns", "repeated-class"])
def test_classification_refuses_misuse(args: tuple[Any, Any], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked by eye, not here
        classification_metrics(*args, **kwargs)


def test_regression_matches_sklearn() -> None:
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 200))
        y_true = rng.normal(size=n).tolist()
        y_pred = (np.asarray(y_true) + rng.normal(scale=0.5, size=n)).tolist()
        actual = regression_metrics(y_true, y_pred)
        assert type(actual["mae"]) is float and type(actual["rmse"]) is float
        assert abs(actual["mae"] - mean_absolute_error(y_true, y_pred)) <= TOLERANCE
        rmse = math.sqrt(mean_squared_error(y_true, y_pred))
        assert abs(actual["rmse"] - rmse) <= TOLERANCE


def test_regression_refuses_different_lengths() -> None:
    with pytest.raises(ValueError, match="y_pred has 1"):
        regression_metrics([1.0, 2.0], [1.0])


@pytest.mark.parametrize(("predictions", "has_proba", "expected"), [
    ([0.1, 2.5], False, False),
    ([1.0, 2.0], False, False),
    ([0.1, 2.5], True, True),
    ([0, 1, 1], False, True),
    (["cat", "dog"], False, True),
    ([True, False], False, True),
    ([0.5, 3], False, True),
    ([np.int64(2)], False, True),
    ([], False, False),
    ([], True, True),
])
def test_is_classification(predictions: list[Any], has_proba: bool, expected: bool) -> None:
    assert is_classification(predictions, has_proba) is expected
