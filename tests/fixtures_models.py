"""Tiny real models on data bundled with scikit-learn, trained once per session."""

from __future__ import annotations

import functools
from typing import Any

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@functools.cache
def iris() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_iris(as_frame=True)
    X = bunch.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return X, bunch.target


@functools.cache
def iris_model(columns: tuple[str, ...] | None = None, C: float = 1.0) -> Any:
    X, y = iris()
    if columns is not None:
        X = X[list(columns)]
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500)).fit(X, y)


def iris_example(columns: tuple[str, ...] | None = None, rows: int = 5) -> pd.DataFrame:
    X, _ = iris()
    if columns is not None:
        X = X[list(columns)]
    return X.head(rows)
