"""Events per second through `modelhost stream` on Redis Streams, against requests per
second through `modelhost serve` at 64 connections, same machine, same run; then the
source-to-sink latency of events sent at half the stream's rate.

The serving benchmark's LogisticRegression (20 features, benchmarks/serving/common.py),
one row per event and per request. Each round (ABBA: every other one reversed):

* **HTTP**: `modelhost serve --workers W`, a 2 s warm-up, then wrk at 64 connections for
  `--duration` seconds: requests per second and p99.
* **Stream**: `--events` events written to a fresh Redis stream first, then W
  `modelhost stream` processes of one group score them (`--idle-exit`): events per
  second from the first result to the last (the sink entries' own Redis timestamps).

Then, once: W consumers running, events written at half the best stream rate for
`--latency-seconds`; each event's latency is its result's Redis timestamp minus its own
(one clock, Redis's): p50, p99 and the largest.

Run from the repository root (wrk and a Redis at 127.0.0.1:6379 needed):

    .venv/bin/python benchmarks/streams/throughput.py [--rounds 2] [--workers 1]

``--latency-rate R`` skips the rounds and measures the latency alone at R events per
second (to compare two trees at one rate: ``PYTHONPATH=TREE/src`` reaches the consumers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serving"))
sys.path.insert(0, str(HERE.parent / "rollouts"))

from common import COLUMNS, make_data, probe_row  # noqa: E402
from split import prepare, serve_and_load  # noqa: E402

MODELHOST = str(Path(sys.executable).with_name("modelhost"))
REDIS = "redis://127.0.0.1:6379"


def _ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0])


def events(n: int) -> list[bytes]:
    """``n`` one-row events drawn from the benchmark's data."""
    X, _, _, _ = make_data()
    rows = X[:min(n, len(X))]
    bodies = [json.dumps(dict(zip(COLUMNS, map(float, row), strict=True))).encode()
              for row in rows]
    return [bodies[i % len(bodies)] for i in range(n)]


def start_consumers(home: Path, source: str, sink: str, workers: int,
                    extra: tuple[str, ...] = ()) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "MODELHOST_HOME": str(home), "MODELHOST_ROLLOUTS": "false"}
    return [subprocess.Popen(
        [MODELHOST, "stream", "bench-lr", "--source", f"{REDIS}/{source}", "--sink",
         f"{REDIS}/{sink}", "--consumer", f"bench-{i}", "--json", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(workers)]


def stream_rate(home: Path, r: redis.Redis, bodies: list[bytes], workers: int) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    source, sink = f"{name}-in", f"{name}-out"
    for start in range(0, len(bodies), 5000):
        pipe = r.pipeline(transaction=False)
        for body in bodies[start:start + 5000]:
            pipe.xadd(source, {"body": body})
        pipe.execute()
    consumers = start_consumers(home, source, sink, workers, ("--idle-exit", "2"))
    try:
        for consumer in consumers:
            if consumer.wait(timeout=600) != 0:
                raise SystemExit("a consumer failed")
        results = r.xlen(sink)
        if results != len(bodies):
            raise SystemExit(f"{results} results for {len(bodies)} events")
        first = _ms(r.xrange(sink, count=1)[0][0])
        last = _ms(r.xrevrange(sink, count=1)[0][0])
        return {"rps": (results - 1) / max((last - first) / 1000.0, 1e-3),
                "events": results, "seconds": (last - first) / 1000.0}
    finally:
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.kill()
        r.delete(source, sink, f"{source}-dead")


def latency(home: Path, r: redis.Redis, rate: float, seconds: float,
            workers: int) -> dict[str, Any]:
    """Events written at ``rate`` per second for ``seconds``, consumers running: each
    event's source-to-sink latency from Redis's own entry timestamps."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    source, sink = f"{name}-in", f"{name}-out"
    r.xgroup_create(source, "modelhost", id="$", mkstream=True)
    consumers = start_consumers(home, source, sink, workers)
    body = events(1)[0]
    try:
        deadline = time.monotonic() + 120
        while len(r.xinfo_consumers(source, "modelhost")) < workers:  # all reading
            if time.monotonic() > deadline:
                raise SystemExit("the consumers did not start")
            time.sleep(0.2)
        time.sleep(1.0)
        total = int(rate * seconds)
        started = time.perf_counter()
        # Paced in slices of 5 ms: every event due by now goes out, in one pipeline, so
        # that the producer (on the consumers' two cores, unlike the many producers of a
        # real system) costs little; each event's latency starts at its own entry.
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            if due > sent:
                pipe = r.pipeline(transaction=False)
                for _ in range(due - sent):
                    pipe.xadd(source, {"body": body})
                pipe.execute()
                sent = due
            time.sleep(0.005)
        deadline = time.monotonic() + 60
        while r.xlen(sink) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        sent_seconds = time.perf_counter() - started
        lat = sorted(_ms(eid) - _ms(f[b"source_id"])
                     for eid, f in r.xrange(sink))
        return {"events": len(lat), "sent_rate": total / sent_seconds,
                "p50_ms": statistics.median(lat),
                "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                "max_ms": lat[-1]}
    finally:
        for consumer in consumers:
            consumer.terminate()
        for consumer in consumers:
            consumer.wait(timeout=60)
        r.delete(source, sink, f"{source}-dead")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1,
                        help="server workers, and stream consumers")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="only the latency, at this many events per second")
    args = parser.parse_args()
    r = redis.Redis.from_url(f"{REDIS}/0")
    bodies = events(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        prepare(home, "lr")
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(
            {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
        if args.latency_rate:
            lat = latency(home, r, args.latency_rate, args.latency_seconds, args.workers)
            print(f"latency at {lat['sent_rate']:,.0f} events/s: p50 {lat['p50_ms']:.0f} ms, "
                  f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms over "
                  f"{lat['events']:,} events")
            return
        http: list[dict[str, Any]] = []
        stream: list[dict[str, Any]] = []
        for round_ in range(1, args.rounds + 1):
            order = ["http", "stream"] if round_ % 2 else ["stream", "http"]
            for kind in order:
                if kind == "http":
                    result = serve_and_load(home, body_file, args.duration,
                                            args=("--workers", str(args.workers)))
                    http.append(result)
                    print(f"round {round_} http: {result['rps']:,.0f} req/s "
                          f"(p99 {result['p99_ms']:.1f} ms)", flush=True)
                else:
                    result = stream_rate(home, r, bodies, args.workers)
                    stream.append(result)
                    print(f"round {round_} stream: {result['rps']:,.0f} events/s "
                          f"({result['events']:,} in {result['seconds']:.2f} s)", flush=True)
        best = max(s["rps"] for s in stream)
        lat = latency(home, r, best / 2, args.latency_seconds, args.workers)
    ratios = [s["rps"] / h["rps"] for s, h in zip(stream, http, strict=True)]
    print(f"\nworkers {args.workers}: stream / http per round: "
          + ", ".join(f"{x:.2f}" for x in ratios)
          + f" (median {statistics.median(ratios):.2f})")
    print(f"latency at {lat['sent_rate']:,.0f} events/s (half of {best:,.0f}): "
          f"p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
          f"max {lat['max_ms']:.0f} ms over {lat['events']:,} events")


if __name__ == "__main__":
    main()
