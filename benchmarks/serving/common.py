"""The benchmark's data and models, shared by every virtualenv.

Each server's environment (modelhost's .venv, the MLflow and BentoML venvs) imports this
file and trains its own copy of the models: the data and the estimators are seeded, so
with the same scikit-learn version the models are identical. ``fingerprint`` lets the
runner check that (it compares the predictions on the test rows across environments).

Only numpy, pandas and scikit-learn are used here; nothing is downloaded.
"""

from __future__ import annotations

import hashlib

import numpy as np

N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
MODELS = ("lr", "rf")
MODEL_TITLES = {"lr": "LogisticRegression",
                "rf": "RandomForestClassifier (100 trees, n_jobs=1)"}


def make_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """5,000 training rows and 1,024 test rows of 20 float64 features, two classes."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=6024, n_features=N_FEATURES, n_informative=12,
                               n_redundant=4, n_classes=2, random_state=42)
    return X[:5000], y[:5000], X[5000:], y[5000:]


def train(kind: str, X: np.ndarray, y: np.ndarray) -> object:
    """Fit on a DataFrame with columns f0..f19, as users with tabular data do (modelhost
    and MLflow then receive the named columns they were fitted on)."""
    X = frame(X)
    if kind == "lr":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000).fit(X, y)
    if kind == "lr-pipeline":  # scaling and the regression, as most LR models ship
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    if kind == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=0).fit(X, y)
    raise ValueError(f"unknown model {kind!r}")


def frame(X: np.ndarray):  # -> pandas.DataFrame
    import pandas as pd

    return pd.DataFrame(X, columns=COLUMNS)


def fingerprint(model: object, X_test: np.ndarray) -> str:
    """A short hash of the model's predicted classes on the test rows."""
    predictions = np.asarray(model.predict(frame(X_test))).astype(np.int64)  # type: ignore[attr-defined]
    return hashlib.sha256(predictions.tobytes()).hexdigest()[:16]


def probe_row() -> list[float]:
    """The one row every load test sends (the first test row)."""
    _, _, X_test, _ = make_data()
    return [float(v) for v in X_test[0]]
