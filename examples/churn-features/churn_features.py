"""The churn example's code: its data, its one transformation, and its training.

    python churn_features.py data     # writes data/: activity, support tickets, labels
    python churn_features.py train    # trains on the training frame, registers, promotes

``log_spend`` is named by features.yaml: the training frame and the server both run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

CUSTOMERS = 500


def log_spend(frame: pd.DataFrame) -> pd.DataFrame:
    """Spend on a log scale: the model sees the same values in training and serving."""
    return frame.assign(spend_30d=np.log1p(frame["spend_30d"]))


def write_data(folder: Path = Path("data")) -> None:
    """Daily activity snapshots of the last 10 days, support tickets for some customers,
    and churn labels observed over the last week (each at its own time)."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    days = np.arange(10)
    activity = pd.DataFrame({
        "customer_id": np.repeat(np.arange(CUSTOMERS), len(days)),
        "event_timestamp": np.tile(now - pd.to_timedelta(days, unit="D"), CUSTOMERS)})
    activity["created"] = activity["event_timestamp"] + pd.Timedelta(minutes=5)
    engaged = rng.random(CUSTOMERS)
    activity["sessions_7d"] = rng.poisson(np.repeat(engaged * 20, len(days)))
    activity["spend_30d"] = (np.repeat(engaged * 120, len(days))
                             * rng.uniform(0.5, 1.5, len(activity))).round(2)
    activity.to_parquet(folder / "activity.parquet")
    some = rng.choice(CUSTOMERS, CUSTOMERS // 3, replace=False)
    pd.DataFrame({"customer_id": some,
                  "event_timestamp": now - pd.to_timedelta(rng.integers(1, 20, len(some)),
                                                           unit="D"),
                  "tickets_30d": rng.integers(1, 6, len(some))}
                 ).to_parquet(folder / "support.parquet")
    at = now - pd.to_timedelta(rng.integers(1, 7 * 24, CUSTOMERS), unit="h")
    pd.DataFrame({"customer_id": np.arange(CUSTOMERS), "event_timestamp": at,
                  "churned": (engaged < 0.3).astype(int)}
                 ).to_parquet(folder / "labels.parquet")


def train() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    from modelhost import Client
    from modelhost.features import training_frame
    from modelhost.features.sources import read_source

    labels = pd.read_parquet("data/labels.parquet")
    with Client() as client:
        repo = client.features.current().repo
        frame = training_frame(labels, repo, "churn_v1", read_source=read_source)
        frame["tickets_30d"] = frame["tickets_30d"].fillna(0).astype("int64")
        X = frame[["sessions_7d", "spend_30d", "tickets_30d"]]
        model = GradientBoostingClassifier(random_state=0).fit(X, frame["churned"])
        version = client.registry.register(model, name="churn", input_example=X.head(5),
                                           feature_service="churn_v1",
                                           metrics={"train_accuracy": model.score(
                                               X, frame["churned"])})
        client.registry.transition("churn", version.version, "staging")
        client.registry.transition("churn", version.version, "production")
        print(f"churn {version.version} in production, trained on {len(X)} rows of "
              f"{version.lineage.feature_service} (definitions version "
              f"{version.lineage.features_version})")


if __name__ == "__main__":
    {"data": write_data, "train": train}[sys.argv[1]]()
