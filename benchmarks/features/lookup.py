"""What an online feature lookup adds to a prediction, beside Feast's get_online_features.

    .venv/bin/python benchmarks/features/lookup.py --feast-python .feast-venv/bin/python \
        [--entities 10000] [--requests 3000] [--rounds 2]

Feast is installed in its own environment only (it pins its own dependencies):

    .venv/bin/uv venv -p 3.11 .feast-venv
    .venv/bin/uv pip install --python .feast-venv/bin/python 'feast[redis]==0.67.0'

One feature view of 20 float features over ``--entities`` customers (one Parquet file),
materialized into each online store: SQLite and Redis. For modelhost, the same
LogisticRegression is registered twice: ``plain`` takes the 20 features in the request,
``bound`` is bound to the feature service and takes only ``customer_id``. The real app
runs in-process and one client sends one-row requests one after another, alternating
plain and bound, so that both see the same machine: the difference of their p50
latencies is what the lookup adds to a prediction. The lookup alone (``OnlineLookup``,
one entity) is timed too. Feast's side (feast_side.py, in Feast's environment) times
``get_online_features`` for one entity and the 20 features on the same data. Rounds
alternate modelhost and Feast (ABBA). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

HERE = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(20)]
REDIS = "redis://127.0.0.1:6379/12"
FEAST_REDIS = "127.0.0.1:6379,db=13"


def make_data(path: Path, entities: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(entities, len(FEATURES))), columns=FEATURES)
    frame.insert(0, "customer_id", np.arange(entities, dtype=np.int64))
    frame.insert(1, "event_timestamp", pd.Timestamp.now(tz="UTC").floor("s")
                 - pd.Timedelta(hours=1))
    frame.to_parquet(path)
    return frame


def definitions(path: Path) -> str:
    schema = ", ".join(f"{{name: {f}, dtype: double}}" for f in FEATURES)
    return f"""
entities:
  - {{name: customer, join_keys: [customer_id]}}
feature_views:
  - name: stats
    entities: [customer]
    ttl: 30d
    schema: [{schema}]
    source: {{path: {path}, timestamp_field: event_timestamp}}
feature_services:
  - {{name: s20, features: [stats]}}
"""


def flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


async def modelhost_side(store: str, data: Path, frame: pd.DataFrame, requests: int,
                         folder: Path) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from modelhost import Client, Settings
    from modelhost.features.lookup import OnlineLookup
    from modelhost.serving import PoolOptions, ServerOptions, create_app

    if store == "redis":
        flush(REDIS)
    settings = Settings(home=folder / f"home-{store}",
                        features_online=REDIS if store == "redis" else None)
    client = Client(settings)
    client.features.apply(definitions(data))
    started = time.perf_counter()
    client.features.materialize()
    materialize_s = time.perf_counter() - started
    X = frame[FEATURES]
    model = LogisticRegression(max_iter=300).fit(X, X["f0"] + X["f1"] > 0)
    for name, service in (("plain", None), ("bound", "s20")):
        mv = client.registry.register(model, name=name, input_example=X.head(3),
                                      feature_service=service)
        client.registry.transition(name, mv.version, "staging")
        client.registry.transition(name, mv.version, "production")

    app = create_app(client.registry, features=client.features,
                     options=ServerOptions(pool=PoolOptions(reload_interval_s=3600.0)))
    rng = np.random.default_rng(2)
    keys = rng.choice(frame["customer_id"].to_numpy(), requests)
    values = frame.set_index("customer_id")[FEATURES]
    bodies = {
        "plain": [orjson.dumps({"inputs": [values.loc[int(k)].to_dict()]}) for k in keys],
        "bound": [orjson.dumps({"inputs": [{"customer_id": int(k)}]}) for k in keys]}

    async def one(name: str, body: bytes) -> float:
        path = f"/v1/models/{name}/predict"
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1234), "server": ("bench", 80)}
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        began = time.perf_counter()
        await app(scope, receive, send)
        took = time.perf_counter() - began
        assert status == [200], (name, status)
        return took * 1e6

    times: dict[str, list[float]] = {"plain": [], "bound": []}
    lookup_us = []
    async with app.running():
        for i in range(200):  # warm up both
            await one("plain", bodies["plain"][i])
            await one("bound", bodies["bound"][i])
        for i in range(requests):
            order = ("plain", "bound") if i % 2 == 0 else ("bound", "plain")
            for name in order:
                times[name].append(await one(name, bodies[name][i]))
        lookup = OnlineLookup(client.features.current().repo, "s20")
        online = client.features.online
        for k in keys:
            began = time.perf_counter()
            await lookup.aread(online, [{"customer_id": int(k)}])
            lookup_us.append((time.perf_counter() - began) * 1e6)
    client.close()
    plain, bound = statistics.median(times["plain"]), statistics.median(times["bound"])
    return {"materialize_s": materialize_s, "plain_p50_us": plain, "bound_p50_us": bound,
            "added_p50_us": bound - plain, "lookup_p50_us": statistics.median(lookup_us),
            "lookup_p99_us": sorted(lookup_us)[int(len(lookup_us) * 0.99)]}


def feast_side(python: str, store: str, data: Path, lookups: int,
               folder: Path) -> dict[str, Any]:
    if store == "redis":
        flush("redis://127.0.0.1:6379/13")
    answer = subprocess.run(
        [python, str(HERE / "feast_side.py"), "--data", str(data), "--store", store,
         "--folder", str(folder / f"feast-{store}-{time.monotonic_ns()}"),
         "--lookups", str(lookups), "--redis", FEAST_REDIS],
        capture_output=True, text=True, check=False, timeout=1800)
    if answer.returncode != 0:
        raise SystemExit(f"Feast's side failed:\n{answer.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feast-python", required=True)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.pop("MODELHOST_FEATURES_ONLINE", None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mh-features-bench-") as tmp:
        folder = Path(tmp)
        data = folder / "stats.parquet"
        frame = make_data(data, args.entities)
        for store in ("sqlite", "redis"):
            for r in range(args.rounds):
                sides = ("modelhost", "feast") if r % 2 == 0 else ("feast", "modelhost")
                for side in sides:
                    if side == "modelhost":
                        result = asyncio.run(modelhost_side(
                            store, data, frame, args.requests, folder / f"r{r}"))
                    else:
                        result = feast_side(args.feast_python, store, data, args.requests,
                                            folder)
                    rows.append((store, r + 1, side, result))
                    print(store, r + 1, side, json.dumps(result), file=sys.stderr)
    print("| store | round | side | lookup p50 (p99) | prediction p50: plain / bound "
          "| added p50 | materialize |")
    print("|---|---|---|---:|---:|---:|---:|")
    for store, r, side, res in rows:
        if side == "modelhost":
            print(f"| {store} | {r} | modelhost | {res['lookup_p50_us']:.0f} µs "
                  f"({res['lookup_p99_us']:.0f}) | {res['plain_p50_us']:.0f} / "
                  f"{res['bound_p50_us']:.0f} µs | {res['added_p50_us']:.0f} µs "
                  f"| {res['materialize_s']:.2f} s |")
        else:
            print(f"| {store} | {r} | Feast {res['feast']} | {res['p50_us']:.0f} µs "
                  f"({res['p99_us']:.0f}) | - | - | {res['materialize_s']:.2f} s |")


if __name__ == "__main__":
    main()
