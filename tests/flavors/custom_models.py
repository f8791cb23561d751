"""Importable helper classes for the flavor tests (skops and pickle find them by name)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class LinearScorer:
    """A plain object with predict (no scikit-learn), for the python flavor."""

    def __init__(self) -> None:
        self.weights = np.array([0.5, -1.0, 2.0, 0.25])

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.weights


class ThresholdClassifier:
    """A plain object with predict, predict_proba and classes_."""

    def __init__(self) -> None:
        self.classes_ = np.array(["no", "yes"])

    def predict_proba(self, x: Any) -> np.ndarray:
        first = np.asarray(x, dtype=float)[:, 0]
        p = 1.0 / (1.0 + np.exp(-(first - 5.8)))
        return np.column_stack([1.0 - p, p])

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[(self.predict_proba(x)[:, 1] >= 0.5).astype(int)]


MODEL_INSTANCE = LinearScorer()


def not_a_model(x: float) -> float:
    return x


class MajorityClassifier(ClassifierMixin, BaseEstimator):
    """A custom scikit-learn estimator: skops must treat its type as untrusted."""

    def fit(self, x: Any, y: Any) -> MajorityClassifier:
        values, counts = np.unique(np.asarray(y), return_counts=True)
        self.classes_ = values
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), self.majority_)


class PatternHolder(BaseEstimator):
    """Picklable but not round-trippable by skops (a compiled regex inside)."""

    def __init__(self, pattern: Any = None) -> None:
        self.pattern = pattern

    def fit(self, x: Any, y: Any = None) -> PatternHolder:
        self.compiled_ = re.compile(self.pattern or "x")
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.zeros(len(x))


class WithLambda:
    """Has predict, but holds a lambda: skops writes it and cannot read it back."""

    def __init__(self) -> None:
        self.transform = lambda v: v * 2

    def predict(self, x: Any) -> np.ndarray:
        return self.transform(np.asarray(x, dtype=float)).sum(axis=1)


class Payload:
    """Unpickling this creates ``marker``: stands in for arbitrary code in a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))
