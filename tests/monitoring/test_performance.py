"""Live performance: the metrics of the labelled predictions of one version in a window,
against its registered metrics; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

from modelhost import Client
from modelhost.monitoring.performance import performance
from modelhost.store.monitoring import Label, LogEntry, PredictionLogStore

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)


def log(store: PredictionLogStore, request_id: str, outputs: dict[str, Any],
        label: Any | None, *, minutes_ago: float = 5, version: str = "1.0.0") -> None:
    rows = len(outputs["predictions"])
    store.append([LogEntry(request_id, "m", version, "stable",
                           NOW - dt.timedelta(minutes=minutes_ago), rows, "[]",
                           orjson.dumps(outputs).decode())])
    if label is not None:
        store.record_feedback([Label(request_id, "m", version, orjson.dumps(label).decode())],
                              now=NOW)


def window(store: PredictionLogStore, **kwargs: Any) -> Any:
    return performance(store, model="m", version=kwargs.pop("version", "1.0.0"),
                       start=NOW - dt.timedelta(hours=1), end=NOW, **kwargs)


@pytest.fixture
def store(client: Client) -> PredictionLogStore:
    return client.predictions


def test_classification_metrics_of_the_labelled_rows_in_the_window(
        store: PredictionLogStore) -> None:
    predicted = [0, 1, 1, 0, 1, 1]
    truth = [0, 1, 0, 0, 1, 0]
    proba = [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1], [0.2, 0.8], [0.45, 0.55]]
    log(store, "a", {"predictions": predicted[:2], "probabilities": proba[:2]}, truth[:2])
    log(store, "b", {"predictions": predicted[2:], "probabilities": proba[2:]}, truth[2:])
    log(store, "unlabelled", {"predictions": [1], "probabilities": [[0.1, 0.9]]}, None)
    log(store, "too-old", {"predictions": [1], "probabilities": [[0.1, 0.9]]}, [0],
        minutes_ago=90)
    log(store, "other-version", {"predictions": [1], "probabilities": [[0.1, 0.9]]}, [0],
        version="2.0.0")
    result = window(store, registered={"accuracy": 0.9, "loss": 0.3})
    assert (result.requests, result.labelled, result.task) == (3, 6, "classification")
    assert result.metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert result.metrics["f1"] == pytest.approx(f1_score(truth, predicted))
    assert result.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(truth, [p[1] for p in proba]))
    assert result.at_registration == {"accuracy": 0.9}  # "loss" is no live metric
    assert result.change == {"accuracy": pytest.approx(4 / 6 - 0.9)}
    document = result.to_dict()
    assert document["window"] == {"start": "2026-12-01T11:00:00+00:00",
                                  "end": "2026-12-01T12:00:00+00:00"}
    assert set(document) == {"model", "version", "window", "requests", "labelled",
                             "task", "metrics", "at_registration", "change"}


def test_string_classes_and_the_probability_columns_order(store: PredictionLogStore) -> None:
    log(store, "a", {"predictions": ["yes", "no", "yes"],
                     "probabilities": [[0.3, 0.7], [0.9, 0.1], [0.6, 0.4]]},
        ["yes", "no", "no"])
    inferred = window(store)  # sorted classes: "no", "yes", as scikit-learn orders them
    assert inferred.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(["yes", "no", "no"], [0.7, 0.1, 0.4]))
    swapped = window(store, classes=["yes", "no"])  # the model says otherwise
    assert swapped.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(["yes", "no", "no"], [0.3, 0.9, 0.6]))
    assert window(store, classes=["a", "b", "c"]).metrics["roc_auc"] is None  # no match


def test_regression_metrics(store: PredictionLogStore) -> None:
    log(store, "a", {"predictions": [1.5, 2.0]}, [1.0, 2.5])
    log(store, "b", {"predictions": [3.25]}, [3.25])
    result = window(store, registered={"mae": 0.1})
    assert result.task == "regression" and result.labelled == 3
    assert result.metrics["mae"] == pytest.approx(
        mean_absolute_error([1.0, 2.5, 3.25], [1.5, 2.0, 3.25]))
    assert result.metrics["rmse"] == pytest.approx(((0.25 + 0.25 + 0) / 3) ** 0.5)
    assert result.change == {"mae": pytest.approx(1 / 3 - 0.1)}


def test_nothing_labelled_says_so(store: PredictionLogStore) -> None:
    log(store, "a", {"predictions": [1]}, None)
    log(store, "multi", {"predictions": [[1, 2]]}, [[1, 2]])  # multi-output: no metrics
    result = window(store)
    assert (result.requests, result.labelled, result.task) == (2, 0, None)
    assert result.metrics == {} and result.change == {}
