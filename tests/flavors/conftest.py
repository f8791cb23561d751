"""Tiny real models trained on scikit-learn's bundled data sets (nothing downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .custom_models import Payload


@pytest.fixture(scope="session")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def forest(iris: tuple[pd.DataFrame, pd.Series]) -> RandomForestClassifier:
    """A classifier fitted on a DataFrame (it knows its feature names)."""
    X, y = iris
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def logistic(cancer: tuple[np.ndarray, np.ndarray]) -> Pipeline:
    """A pipeline fitted on a plain array (no feature names); only skops-safe types."""
    X, y = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


@pytest.fixture(scope="session")
def iris_logistic(iris: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    X, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


@pytest.fixture(scope="session")
def regressor(diabetes: tuple[pd.DataFrame, pd.Series]) -> RandomForestRegressor:
    X, y = diabetes
    return RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(X, y)


@pytest.fixture
def payload_pickle(tmp_path: Path) -> tuple[bytes, Path]:
    """Pickle bytes that create a marker file when unpickled, and that marker's path."""
    marker = tmp_path / "pwned"
    return pickle.dumps(Payload(marker)), marker
