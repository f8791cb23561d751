"""Microseconds per prediction request through the real app, in-process, for comparing trees.

    PYTHONPATH=$TREE/src .venv/bin/python benchmarks/serving/inprocess.py [--requests 6400]

Registers the benchmark's LogisticRegression (common.py) in a temporary MODELHOST_HOME,
starts the app of whatever ``modelhost`` is on the path (only APIs that every tree since
the route parser has), and drives it with 64 concurrent clients sending in-memory ASGI
messages, one row per request: 5 rounds, median printed. Without the network and wrk, two
trees can be compared to a microsecond; alternate them, the machine drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from common import COLUMNS, make_data, train

_CLIENTS = 64


async def _measure(requests: int, rounds: int) -> list[float]:
    import pandas as pd

    import modelhost
    from modelhost import Client
    from modelhost.config import Settings
    from modelhost.serving import PoolOptions, ServerOptions, create_app

    X, y, X_test, _ = make_data()
    client = Client(Settings())
    client.registry.register(train("lr", X, y), name="lr",
                             input_example=pd.DataFrame(X_test[:5], columns=COLUMNS))
    client.registry.transition("lr", "1.0.0", "staging")
    client.registry.transition("lr", "1.0.0", "production")
    body = orjson.dumps({"inputs": [dict(zip(COLUMNS, map(float, X_test[0]), strict=True))]})
    app = create_app(client.registry,
                     options=ServerOptions(pool=PoolOptions(reload_interval_s=3600.0)))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/models/lr/predict",
             "raw_path": b"/v1/models/lr/predict", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1234), "server": ("bench", 80)}
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def client_loop(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    print(f"modelhost from {Path(modelhost.__file__).parent.parent.name}/", file=sys.stderr)
    results = []
    async with app.running():
        await asyncio.gather(*(client_loop(50) for _ in range(_CLIENTS)))  # warm up
        for _ in range(rounds):
            started = time.perf_counter()
            await asyncio.gather(*(client_loop(requests // _CLIENTS)
                                   for _ in range(_CLIENTS)))
            results.append((time.perf_counter() - started) / requests)
    assert statuses == {200}, statuses
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["MODELHOST_HOME"] = home
        rounds = asyncio.run(_measure(args.requests, args.rounds))
    print(f"{statistics.median(rounds) * 1e6:.1f} µs per request (median of {args.rounds}; "
          f"rounds {', '.join(f'{r * 1e6:.1f}' for r in rounds)})")


if __name__ == "__main__":
    main()
