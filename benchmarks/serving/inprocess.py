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
from memory_client import Replies, clients, post_scope

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
    path = "/v1/models/lr/predict"
    replies = Replies(body)

    def scopes(count: int) -> list[dict[str, Any]]:
        return [post_scope(path, body) for _ in range(count)]

    print(f"modelhost from {Path(modelhost.__file__).parent.parent.name}/", file=sys.stderr)
    results = []
    async with app.running():
        await clients(app, scopes(50 * _CLIENTS), replies, _CLIENTS)  # warm up
        for _ in range(rounds):
            batch = scopes(requests)
            started = time.perf_counter()
            await clients(app, batch, replies, _CLIENTS)
            results.append((time.perf_counter() - started) / requests)
    assert set(replies.statuses) == {200}, set(replies.statuses)
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
