"""Feast's side of tests/features/test_feast.py, run with Feast's own Python.

    FEAST_PYTHON parity.py REPO ENTITIES.parquet END_ISO OUT_FOLDER

In the Feast repository REPO (already applied with ``feast apply``): the training frame
of the service ``churn`` for the entity rows, written to OUT/training.parquet; then a
materialization up to END and the online values of the service for each distinct
customer, written to OUT/online.json.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pandas as pd
from feast import FeatureStore


def main() -> None:
    repo, entities, end, out = sys.argv[1:5]
    store = FeatureStore(repo_path=repo)
    service = store.get_feature_service("churn")
    entity_df = pd.read_parquet(entities)
    training = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    training.to_parquet(Path(out) / "training.parquet")
    until = dt.datetime.fromisoformat(end)
    store.materialize(start_date=until - dt.timedelta(days=3650), end_date=until)
    customers = sorted(int(c) for c in entity_df["customer_id"].unique())
    online = store.get_online_features(
        features=service, entity_rows=[{"customer_id": c} for c in customers]).to_dict()
    (Path(out) / "online.json").write_text(json.dumps(online, default=str))


if __name__ == "__main__":
    main()
