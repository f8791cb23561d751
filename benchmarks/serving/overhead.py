"""What routing and observers cost per prediction request, in-process (no network).

Run from the repository root:

    .venv/bin/python benchmarks/serving/overhead.py [--requests 4000] [--rounds 5]

The script registers the benchmark's LogisticRegression (common.py) in a temporary
MODELHOST_HOME and drives the real ASGI app with in-memory ASGI messages from 64 concurrent
clients, in these configurations, alternating them round by round so that the machine's
drift hits all alike:

* ``baseline``: one arm, no routing key, the metrics observer only (what every server
  does today);
* ``routing key``: the same with ``X-Routing-Key`` (one arm: the key is not even hashed);
* ``two arms, no key`` and ``two arms + key``: a 95/5 routing with a 10% shadow, without
  a key (a random draw) and with one per request (two SHA-256 buckets); the shadow is
  chosen, not yet sent (deployments will send it). Beyond the router, two arms split the
  traffic over two batchers, so the 5% arm's batches are small: that, not the hashing,
  is most of their cost;
* ``data observer``: one arm, plus an observer that asks for the validated inputs and the
  outputs (what the monitoring sink will do), doing nothing with them.

It prints the median microseconds per request of each configuration over the rounds and
its difference to the baseline, and micro-timings of the router alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import MappingProxyType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from common import COLUMNS, make_data, train
from memory_client import Replies, clients, post_scope


class DataObserver:
    name = "data"
    wants_data = True

    def __init__(self) -> None:
        self.seen = 0

    def observe(self, o: Any) -> None:
        self.seen += o.rows if o.inputs is not None and o.predictions is not None else 0


_CLIENTS = 64


async def _drive(app: Any, body: bytes, requests: int, keyed: bool) -> float:
    """Seconds per request for ``requests`` requests through the app, from 64 clients
    at once, as wrk's 64 connections: requests batch as they would."""
    replies = Replies(body)
    scopes = [post_scope("/v1/models/lr/predict", body,
                         headers=[(b"x-routing-key", f"user-{i}".encode())] if keyed else ())
              for i in range(requests)]
    started = time.perf_counter()
    await clients(app, scopes, replies, _CLIENTS)
    elapsed = time.perf_counter() - started
    assert set(replies.statuses) == {200}, set(replies.statuses)
    return elapsed / requests


async def _measure(requests: int, rounds: int) -> dict[str, list[float]]:
    from modelhost import Client
    from modelhost.config import Settings
    from modelhost.rollout import Arm, ArmRole, Routing, Shadow
    from modelhost.serving import PoolOptions, ServerOptions, create_app
    from modelhost.serving.table import ModelEntry, RoutingTable

    X, y, X_test, _ = make_data()
    client = Client(Settings())
    import pandas as pd

    example = pd.DataFrame(X_test[:5], columns=COLUMNS)
    for version in ("1.0.0", "1.1.0"):
        client.registry.register(train("lr", X, y), name="lr", version=version,
                                 input_example=example)
    client.registry.transition("lr", "1.0.0", "staging")
    client.registry.transition("lr", "1.0.0", "production")
    client.registry.register(train("lr", X, y), name="lr", version="1.2.0",
                             input_example=example)
    body = orjson.dumps({"inputs": [dict(zip(COLUMNS, map(float, X_test[0]), strict=True))]})

    quiet = ServerOptions(pool=PoolOptions(reload_interval_s=3600.0))
    plain = create_app(client.registry, options=quiet)
    observed = create_app(client.registry, options=quiet, observers=[DataObserver()])
    split = create_app(client.registry, options=quiet)
    results: dict[str, list[float]] = {"baseline": [], "routing key": [],
                                       "two arms, no key": [], "two arms + key": [],
                                       "data observer": []}
    async with plain.running(), observed.running(), split.running():
        table = split.server.watcher.table
        routing = Routing("lr", (Arm("1.0.0", 0.95), Arm("1.1.0", 0.05, ArmRole.CANDIDATE)),
                          Shadow("1.2.0", 0.1))
        entry = table.models["lr"]
        two_arms = RoutingTable(table.revision, MappingProxyType(
            {"lr": ModelEntry(routing, entry.aliases, entry.cached)}))
        split.server.watcher.table = two_arms
        await split.server.pool.apply(two_arms)
        await split.server.pool.wait_until_ready(timeout_s=60)
        assert split.server.pool.active("lr") == routing
        for app in (plain, observed, split):  # warm up
            await _drive(app, body, 500, keyed=True)
        for _ in range(rounds):
            results["baseline"].append(await _drive(plain, body, requests, keyed=False))
            results["routing key"].append(await _drive(plain, body, requests, keyed=True))
            results["two arms, no key"].append(
                await _drive(split, body, requests, keyed=False))
            results["two arms + key"].append(await _drive(split, body, requests, keyed=True))
            results["data observer"].append(
                await _drive(observed, body, requests, keyed=False))
    return results


def _router_timings() -> list[tuple[str, float]]:
    from modelhost.rollout import Arm, ArmRole, Routing, Shadow, choose, shadowed

    single = Routing.single("churn", "1.0.0")
    split = Routing("churn", (Arm("1.0.0", 0.95), Arm("1.1.0", 0.05, ArmRole.CANDIDATE)),
                    Shadow("1.2.0", 0.1))
    cases = [("choose, one arm", lambda: choose(single, "user-123456")),
             ("choose, two arms, key", lambda: choose(split, "user-123456")),
             ("choose, two arms, no key", lambda: choose(split, None)),
             ("shadowed, no shadow", lambda: shadowed(single, "user-123456")),
             ("shadowed, with shadow, key", lambda: shadowed(split, "user-123456"))]
    timings = []
    for label, call in cases:
        n = 200_000
        best = min(timeit.repeat(call, number=n, repeat=5)) / n
        timings.append((label, best))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["MODELHOST_HOME"] = home
        results = asyncio.run(_measure(args.requests, args.rounds))
    base = statistics.median(results["baseline"])
    print(f"{args.requests} requests from {_CLIENTS} concurrent clients x {args.rounds} "
          "rounds, in-process, LogisticRegression, one row per request\n")
    print("| configuration | µs per request (median) | min-max over rounds | vs baseline |")
    print("|---|---:|---:|---:|")
    for label, values in results.items():
        median = statistics.median(values)
        print(f"| {label} | {median * 1e6:.1f} | {min(values) * 1e6:.1f}-"
              f"{max(values) * 1e6:.1f} | {(median - base) * 1e6:+.1f} µs "
              f"({median / base - 1:+.1%}) |")
    print("\n| router call | ns (best of 5) |\n|---|---:|")
    for label, seconds in _router_timings():
        print(f"| {label} | {seconds * 1e9:.0f} |")


if __name__ == "__main__":
    main()
