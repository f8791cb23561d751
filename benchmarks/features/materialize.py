"""Materialization of a million source rows into the online store.

    .venv/bin/python benchmarks/features/materialize.py [--rows 1000000] [--keys 1000000] \
        [--feast-python .feast-venv/bin/python]

One Parquet file of ``--rows`` rows of 20 float features over ``--keys`` customers (all
distinct by default: every row is written), materialized by ``modelhost features
materialize`` (the service, in-process: reading, keeping the latest row per key, encoding
and writing) into SQLite and into Redis; then once more with nothing new (the incremental
run). With ``--feast-python``, Feast's ``materialize`` on the same file and stores, for
comparison (see lookup.py for its environment). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lookup import FEATURES, REDIS, definitions, feast_side, flush


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=None)
    parser.add_argument("--feast-python", default=None)
    args = parser.parse_args()
    from modelhost import Client, Settings

    keys = args.keys or args.rows
    print_rows = []
    with tempfile.TemporaryDirectory(prefix="mh-materialize-bench-") as tmp:
        folder = Path(tmp)
        data = folder / "stats.parquet"
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.normal(size=(args.rows, len(FEATURES))), columns=FEATURES)
        frame.insert(0, "customer_id", rng.permutation(args.rows) % keys)
        frame.insert(1, "event_timestamp", pd.Timestamp.now(tz="UTC").floor("s")
                     - pd.to_timedelta(rng.integers(60, 86400, args.rows), unit="s"))
        frame.to_parquet(data)
        del frame
        for store in ("sqlite", "redis"):
            if store == "redis":
                flush(REDIS)
            settings = Settings(home=folder / f"home-{store}",
                                features_online=REDIS if store == "redis" else None)
            with Client(settings) as client:
                client.features.apply(definitions(data))
                started = time.perf_counter()
                (done,) = client.features.materialize()
                first = time.perf_counter() - started
                started = time.perf_counter()
                client.features.materialize()
                again = time.perf_counter() - started
            print_rows.append((store, "modelhost", first, done.keys, again))
            print(store, "modelhost", first, done.keys, again, file=sys.stderr)
            if args.feast_python:
                result = feast_side(args.feast_python, store, data, 0, folder)
                print_rows.append((store, f"Feast {result['feast']}",
                                   result["materialize_s"], None, None))
                print(store, json.dumps(result), file=sys.stderr)
            if store == "redis":
                flush(REDIS)
                flush("redis://127.0.0.1:6379/13")
    print(f"{args.rows:,} source rows, {keys:,} keys, 20 float features\n")
    print("| store | side | materialize | keys written | rerun, nothing new |")
    print("|---|---|---:|---:|---:|")
    for store, side, first, written, again in print_rows:
        print(f"| {store} | {side} | {first:.1f} s | "
              f"{'-' if written is None else f'{written:,}'} | "
              f"{'-' if again is None else f'{again:.1f} s'} |")


if __name__ == "__main__":
    main()
