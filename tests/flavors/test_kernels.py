"""Array kernels: used only when verified, and then exactly the model's own outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelhost.flavors import _kernels
from modelhost.flavors._predictor import ObjectModel


def _frame(loader: Any) -> tuple[pd.DataFrame, Any]:
    X, y = loader(return_X_y=True, as_frame=True)
    return X, y


class ShiftedLogistic(LogisticRegression):
    """A subclass that changes the arithmetic: it must never get a kernel."""

    def predict_proba(self, X: Any) -> Any:
        return super().predict_proba(X)[:, ::-1]


def _cases() -> list[tuple[str, Any, pd.DataFrame]]:
    cancer_X, cancer_y = _frame(load_breast_cancer)
    iris_X, iris_y = _frame(load_iris)
    names = np.array(["setosa", "versicolor", "virginica"])[iris_y]
    diabetes_X, diabetes_y = _frame(load_diabetes)
    two_targets = np.column_stack([diabetes_y, diabetes_y * 0.5])
    return [
        ("binary logistic regression",
         LogisticRegression(max_iter=5000).fit(cancer_X, cancer_y), cancer_X),
        ("scaled binary pipeline",
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
             cancer_X, cancer_y), cancer_X),
        ("multinomial with string classes",
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
             iris_X, names), iris_X),
        ("linear regression", LinearRegression().fit(diabetes_X, diabetes_y), diabetes_X),
        ("ridge with two targets", Ridge().fit(diabetes_X, two_targets), diabetes_X),
        ("lasso after scaling (mean only)",
         make_pipeline(StandardScaler(with_std=False), Lasso(alpha=0.1)).fit(
             diabetes_X, diabetes_y), diabetes_X),
        ("elastic net", ElasticNet(alpha=0.01).fit(diabetes_X, diabetes_y), diabetes_X),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case[0])
def test_supported_models_give_exactly_their_own_outputs(
        case: tuple[str, Any, pd.DataFrame]) -> None:
    _, estimator, X = case
    model = ObjectModel(estimator)
    model.warm_up(X.head(5))
    assert "kernel" in model.shortcuts and model.array_kernel
    rows = np.ascontiguousarray(X.to_numpy())
    for batch in (rows, rows[:1], rows[7:40]):
        predictions, probabilities = model.predict_with_proba(batch)
        frame = pd.DataFrame(batch, columns=X.columns)
        assert _kernels.agrees(predictions, estimator.predict(frame))
        if hasattr(estimator, "predict_proba"):
            assert probabilities is not None
            assert _kernels.agrees(probabilities, estimator.predict_proba(frame))
            assert np.abs(probabilities - estimator.predict_proba(frame)).max() < 1e-13
        else:
            assert probabilities is None


def test_other_models_and_subclasses_get_no_kernel() -> None:
    X, y = _frame(load_iris)
    for estimator in (RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
                      ShiftedLogistic(max_iter=1000).fit(X, y)):
        assert _kernels.compile_kernel(estimator) is None
        model = ObjectModel(estimator)
        model.warm_up(X.head(5))
        assert "kernel" not in model.shortcuts and not model.array_kernel
        predictions, probabilities = model.predict_with_proba(X.to_numpy()[:10])
        assert np.array_equal(predictions, estimator.predict(X.head(10)))
        assert np.array_equal(probabilities, estimator.predict_proba(X.head(10)))


def test_a_kernel_that_disagrees_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _frame(load_breast_cancer)
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    real = _kernels.compile_kernel

    def off_by_a_little(model: Any) -> Any:
        kernel = real(model)
        assert kernel is not None

        def wrong(data: Any) -> Any:
            predictions, probabilities = kernel(data)
            return predictions, probabilities + 1e-6

        return wrong

    monkeypatch.setattr(_kernels, "compile_kernel", off_by_a_little)
    model = ObjectModel(estimator)
    model.warm_up(X.head(5))
    assert "kernel" not in model.shortcuts and not model.array_kernel
    assert "array" in model.shortcuts


def test_other_dtypes_take_the_normal_path() -> None:
    X, y = _frame(load_breast_cancer)
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    model = ObjectModel(estimator)
    model.warm_up(X.head(5))
    single = X.to_numpy()[:20].astype(np.float32)
    predictions, probabilities = model.predict_with_proba(single)
    frame = pd.DataFrame(single, columns=X.columns)
    assert np.array_equal(predictions, estimator.predict(frame))
    assert np.array_equal(probabilities, estimator.predict_proba(frame))
