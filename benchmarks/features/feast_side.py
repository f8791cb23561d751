"""Feast's side of the online lookup benchmark (run by lookup.py, in Feast's own env).

    FEAST_PYTHON benchmarks/features/feast_side.py --data stats.parquet --store sqlite \
        --folder DIR --lookups 2000 [--redis 127.0.0.1:6379,db=13]

Builds a Feast repository over the same Parquet file (one entity, one feature view of
the same 20 float features), applies it, materializes it into Feast's SQLite or Redis
online store, then times ``get_online_features`` for one entity and the 20 features,
one call after another. Prints one JSON line: the materialization's seconds and the
lookup's p50 and p99 in microseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--store", choices=("sqlite", "redis"), required=True)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--redis", default="127.0.0.1:6379,db=13")
    args = parser.parse_args()

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64
    from feast.value_type import ValueType

    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    online = (f"  type: sqlite\n  path: {folder / 'online.db'}\n" if args.store == "sqlite"
              else f"  type: redis\n  connection_string: \"{args.redis}\"\n")
    (folder / "feature_store.yaml").write_text(
        f"project: bench\nregistry: {folder / 'registry.db'}\nprovider: local\n"
        f"online_store:\n{online}offline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n")
    frame = pd.read_parquet(args.data)
    names = [c for c in frame.columns if c.startswith("f")]
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    source = FileSource(path=str(Path(args.data).resolve()),
                        timestamp_field="event_timestamp")
    view = FeatureView(name="stats", entities=[customer], ttl=dt.timedelta(days=3650),
                       schema=[Field(name=n, dtype=Float64) for n in names], source=source,
                       online=True)
    store = FeatureStore(repo_path=str(folder))
    store.apply([customer, view])
    end = frame["event_timestamp"].max().to_pydatetime() + dt.timedelta(seconds=1)
    started = time.perf_counter()
    store.materialize(start_date=end - dt.timedelta(days=3650), end_date=end)
    materialize_s = time.perf_counter() - started

    if args.lookups == 0:  # the materialization alone
        print(json.dumps({"materialize_s": materialize_s,
                          "feast": __import__("feast").__version__}))
        return
    features = [f"stats:{n}" for n in names]
    keys = np.random.default_rng(1).choice(frame["customer_id"].to_numpy(), args.lookups)
    first = store.get_online_features(features=features,
                                      entity_rows=[{"customer_id": int(keys[0])}]).to_dict()
    assert first[names[0]][0] is not None, first
    for key in keys[:200]:  # warm up
        store.get_online_features(features=features, entity_rows=[{"customer_id": int(key)}])
    times = []
    for key in keys:
        started = time.perf_counter()
        store.get_online_features(features=features,
                                  entity_rows=[{"customer_id": int(key)}]).to_dict()
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    print(json.dumps({"materialize_s": materialize_s, "p50_us": statistics.median(times),
                      "p99_us": times[int(len(times) * 0.99)],
                      "feast": __import__("feast").__version__}))


if __name__ == "__main__":
    main()
