"""The churn pipeline's steps, and the data they train on.

Run ``python steps.py`` once to write ``data/churn.csv``: 2,000 customers generated with
scikit-learn's ``make_classification`` (no download), turned into named columns - tenure,
charges, support calls, usage, late payments, a ``region`` (the group the fairness gate
compares) and the target ``churned``.

Each step takes a ``StepContext`` and returns a dict of the outputs ``modelhost.yaml``
declares for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TARGET = "churned"
GROUP = "region"
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "late_payments"]
REGIONS = np.array(["north", "south", "east", "west"])


def generate(rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    """A churn-like table: the informative features of make_classification, rescaled."""
    X, y = make_classification(n_samples=rows, n_features=6, n_informative=4, n_redundant=1,
                               n_repeated=0, weights=[0.72], flip_y=0.03, class_sep=1.0,
                               random_state=seed)
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tenure_months": np.clip(np.round(30 - 10 * X[:, 0]), 0, 72).astype(int),
        "monthly_charges": np.clip(np.round(70 + 15 * X[:, 1], 2), 15, 150),
        "support_calls": np.clip(np.round(2 + 1.5 * X[:, 2]), 0, 15).astype(int),
        "usage_gb": np.clip(np.round(60 + 20 * X[:, 3], 1), 0, None),
        "late_payments": np.clip(np.round(1 + X[:, 4]), 0, 12).astype(int),
        GROUP: REGIONS[rng.integers(0, len(REGIONS), rows)],
        TARGET: y.astype(int),
    })


def write_data(folder: Path, rows: int = 2000, seed: int = 7) -> Path:
    """Write ``data/churn.csv`` under ``folder``; returns its path."""
    path = folder / "data" / "churn.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(rows, seed).to_csv(path, index=False)
    return path


# --- steps ----------------------------------------------------------------------------


def features(ctx: Any) -> dict[str, Any]:
    """Split the validated data into a training set and a holdout (kept with the group
    column, which the model does not use, so the fairness gate can compare regions)."""
    data = ctx.dataframe("data")
    train, holdout = train_test_split(data, test_size=ctx.params["holdout_share"],
                                      random_state=ctx.params["seed"], stratify=data[TARGET])
    ctx.log_metric("train_rows", len(train))
    return {"train": train.reset_index(drop=True), "holdout": holdout.reset_index(drop=True)}


def train(ctx: Any) -> dict[str, Any]:
    """Fit the model the params ask for; ``most_frequent`` is a deliberately bad one."""
    data = ctx.inputs["train"]
    X, y = data[FEATURES], data[TARGET]
    if ctx.params["model"] == "most_frequent":
        model = DummyClassifier(strategy="most_frequent")
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(
            C=ctx.params["C"], max_iter=ctx.params["max_iter"]))
    model.fit(X, y)
    return {"model": model, "example": X.head(5)}


def evaluate(ctx: Any) -> dict[str, Any]:
    """Score the model on the holdout and log the metrics the gates look at."""
    model, holdout = ctx.inputs["model"], ctx.inputs["holdout"]
    X, y = holdout[FEATURES], holdout[TARGET]
    predicted = model.predict(X)
    ctx.log_metrics({
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, model.predict_proba(X)[:, 1])),
    })
    return {}


if __name__ == "__main__":
    written = write_data(Path(__file__).resolve().parent)
    print(f"wrote {len(pd.read_csv(written)):,} rows to {written.name}")
