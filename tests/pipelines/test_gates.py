"""Each gate kind, passing and failing, with the amounts it reports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from modelhost import Client
from modelhost.pipelines.candidate import Candidate
from modelhost.pipelines.gates import GateInputs, evaluate_gates
from modelhost.pipelines.spec import (
    DataValidationGate,
    FairnessGate,
    LatencyGate,
    ProductionGate,
    ThresholdGate,
)
from tests.pipelines.toy import toy_frame

FEATURES = ["a", "b"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = toy_frame(rows=300)
    return frame.iloc[:200], frame.iloc[200:].reset_index(drop=True)


@pytest.fixture(scope="module")
def good(data: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    train, _ = data
    return LogisticRegression().fit(train[FEATURES], train["y"])


@pytest.fixture
def candidate(good: Any, data: tuple[pd.DataFrame, pd.DataFrame]) -> Iterator[Candidate]:
    c = Candidate(good, example=data[0][FEATURES])
    yield c
    c.close()


def inputs(client: Client, candidate: Candidate | None = None, holdout: Any = None,
           **kwargs: Any) -> GateInputs:
    return GateInputs(metrics=kwargs.pop("metrics", {}), registry=client.registry,
                      candidate=candidate, holdout=holdout, target="y", model_name="toy",
                      **kwargs)


def test_threshold_reports_the_margin(sqlite_client: Client) -> None:
    metrics = {"auc": 0.82, "log_loss": 0.41}
    passed, short, over, missing = evaluate_gates([
        ThresholdGate(kind="threshold", metric="auc", min=0.8),
        ThresholdGate(kind="threshold", metric="auc", min=0.9, max=0.99),
        ThresholdGate(kind="threshold", metric="log_loss", max=0.4),
        ThresholdGate(kind="threshold", metric="f1", min=0.5),
    ], inputs(sqlite_client, metrics=metrics))
    assert passed.passed and passed.margin == pytest.approx(0.02) and passed.threshold == 0.8
    assert passed.message == "auc = 0.82 (limit 0.8, margin 0.02)"
    assert not short.passed and short.observed == 0.82 and short.threshold == 0.9
    assert short.margin == pytest.approx(-0.08)
    assert short.message == "auc = 0.82 is below the minimum 0.9 by 0.08"
    assert not over.passed and over.message == "log_loss = 0.41 is above the maximum 0.4 by 0.01"
    assert not missing.passed and missing.message == (
        "could not be checked: metric 'f1' was not logged by any step (logged: auc, log_loss)")


def test_not_worse_than_production(sqlite_client: Client, candidate: Candidate,
                                   data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = data
    gate = ProductionGate(kind="not_worse_than_production", metric="auc", tolerance=0.01)
    (first,) = evaluate_gates([gate], inputs(sqlite_client, candidate, holdout))
    assert first.passed and first.message == "no production version of 'toy' yet; nothing " \
                                             "to compare with"
    # Production is the good model: a constant model is worse by AUC - 0.5.
    mv = sqlite_client.registry.register(candidate.model, name="toy",
                                         input_example=train[FEATURES].head(3))
    sqlite_client.registry.transition("toy", mv.version, "staging")
    sqlite_client.registry.transition("toy", mv.version, "production")
    (same,) = evaluate_gates([gate], inputs(sqlite_client, candidate, holdout))
    assert same.passed and same.margin == pytest.approx(0.01) and "equal" in same.message
    dummy = Candidate(DummyClassifier(strategy="prior").fit(train[FEATURES], train["y"]),
                      example=train[FEATURES])
    try:
        (worse,) = evaluate_gates([gate], inputs(sqlite_client, dummy, holdout))
    finally:
        dummy.close()
    production_auc = worse.details["production_value"]
    assert not worse.passed and worse.observed == pytest.approx(0.5)
    assert worse.margin == pytest.approx(0.01 - (production_auc - 0.5))
    assert worse.threshold == pytest.approx(production_auc - 0.01)
    assert f"worse by {production_auc - 0.5:.4g}, {production_auc - 0.51:.4g} more than " \
           "the tolerance 0.01" in worse.message
    assert worse.message.startswith(f"auc 0.5 vs production {mv.version}")


def test_latency_against_the_sla(sqlite_client: Client, candidate: Candidate) -> None:
    fast, slow = evaluate_gates([LatencyGate(kind="latency", p99_ms=10_000, repeats=20),
                                 LatencyGate(kind="latency", p99_ms=1e-6, repeats=20)],
                                inputs(sqlite_client, candidate))
    assert fast.passed and fast.observed is not None and fast.threshold == 10_000
    assert fast.margin == pytest.approx(10_000 - fast.observed)
    assert fast.details["calls"] == 20 and fast.details["rows"] == 5
    assert fast.details["flavor"] == "sklearn"
    assert not slow.passed and slow.margin is not None and slow.margin < 0
    assert "exceeds the SLA of 1e-06 ms by" in slow.message


def test_latency_uses_the_clock_it_is_given(sqlite_client: Client,
                                            candidate: Candidate) -> None:
    ticks = iter(np.arange(0, 10_000, 0.004))  # every clock read is 4 ms later

    (result,) = evaluate_gates([LatencyGate(kind="latency", p99_ms=5, repeats=10)],
                               inputs(sqlite_client, candidate, clock=lambda: next(ticks)))
    assert result.passed and result.observed == pytest.approx(4.0)


def test_data_validation_gate(sqlite_client: Client) -> None:
    gate = DataValidationGate(kind="data_validation")
    ok, bad = evaluate_gates([gate, DataValidationGate(kind="data_validation",
                                                       datasets=["b", "c"])],
                             inputs(sqlite_client, validation={"a": True, "b": False},
                                    datasets=["a", "b", "c"]))
    assert not ok.passed and ok.observed == 2.0 and ok.threshold == 0.0
    assert ok.message == "failed validation: b; not validated (no 'schema'): c"
    assert not bad.passed
    (good,) = evaluate_gates([gate], inputs(sqlite_client, validation={"a": True},
                                            datasets=["a"]))
    assert good.passed and good.message == "a passed validation" and good.margin == 0


def test_fairness_gap_across_groups(sqlite_client: Client, good: Any,
                                    data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = data
    unfair = holdout.copy()
    flip = unfair["g"] == "x"
    unfair.loc[flip, "y"] = 1 - unfair.loc[flip, "y"]  # the model is wrong on group x
    model = Candidate(good, example=train[FEATURES])
    try:
        strict, loose = evaluate_gates(
            [FairnessGate(kind="fairness", group="g", max_gap=0.1),
             FairnessGate(kind="fairness", group="g", max_gap=1.0, metric="recall")],
            inputs(sqlite_client, model, unfair))
        (missing,) = evaluate_gates([FairnessGate(kind="fairness", group="zone",
                                                  max_gap=0.1)],
                                    inputs(sqlite_client, model, unfair))
    finally:
        model.close()
    groups = strict.details["groups"]
    gap = groups["z"] - groups["x"]
    assert not strict.passed and strict.observed == pytest.approx(gap) and gap > 0.5
    assert strict.margin == pytest.approx(0.1 - gap)
    assert strict.message == (f"accuracy gap across 'g' is {gap:.4g} (z {groups['z']:.4g}, "
                              f"x {groups['x']:.4g}), above the max 0.1 by {gap - 0.1:.4g}")
    assert loose.passed and loose.threshold == 1.0
    assert not missing.passed and missing.message == "could not be checked: the holdout has " \
                                                     "no group column 'zone'"


def test_a_model_that_raises_fails_its_gate(sqlite_client: Client,
                                            data: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = data
    model = Candidate(LogisticRegression().fit(train[FEATURES], train["y"]),
                      example=train[["a"]])  # an example missing a column the model needs
    try:
        (result,) = evaluate_gates([FairnessGate(kind="fairness", group="g", max_gap=1)],
                                   inputs(sqlite_client, model, holdout))
    finally:
        model.close()
    assert not result.passed and result.message == (
        "could not be checked: the model raised ValueError: The feature names should match "
        "those that were passed during fit.")
