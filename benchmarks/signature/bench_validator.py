"""Throughput of InputValidator.validate() on the prediction hot path.

Run from the repository root:

    .venv/bin/python benchmarks/signature/bench_validator.py [--repeat 7]

Payloads are built the way the server receives them (plain Python values, as json.loads
returns them): records (``[{"f0": 0.1, ...}, ...]``) and columns (``{"f0": [...], ...}``)
for 20 double columns, plus a mixed signature (8 double, 4 long, 2 integer, 2 boolean,
3 string, 1 datetime; one double nullable with 10% nulls). Every timing is the best of
``--repeat`` runs of enough calls to last about 0.2 s; rows/s = rows / time per call.
The validator is built once, as the server builds it once per model version.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from modelhost.entities import ColumnSpec, ColumnType, Signature
from modelhost.signature import InputValidator

SIZES = (1, 64, 1024, 10_000)
N_DOUBLES = 20

MIXED: list[tuple[str, ColumnType, bool]] = [
    *((f"d{i}", ColumnType.DOUBLE, i == 0) for i in range(8)),
    *((f"l{i}", ColumnType.LONG, False) for i in range(4)),
    *((f"i{i}", ColumnType.INTEGER, False) for i in range(2)),
    *((f"b{i}", ColumnType.BOOLEAN, False) for i in range(2)),
    *((f"s{i}", ColumnType.STRING, False) for i in range(3)),
    ("t0", ColumnType.DATETIME, False),
]


def doubles_signature() -> Signature:
    return Signature(tuple(ColumnSpec(f"f{i}", ColumnType.DOUBLE) for i in range(N_DOUBLES)))


def mixed_signature() -> Signature:
    return Signature(tuple(ColumnSpec(n, t, nullable=nullable) for n, t, nullable in MIXED))


def doubles_records(n: int, rng: random.Random) -> list[dict[str, Any]]:
    return [{f"f{i}": rng.random() for i in range(N_DOUBLES)} for _ in range(n)]


def mixed_records(n: int, rng: random.Random) -> list[dict[str, Any]]:
    start = dt.datetime(2024, 1, 1)
    cities = ["oslo", "lima", "pune", "kyiv", "nice"]
    records = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for name, kind, nullable in MIXED:
            if nullable and rng.random() < 0.1:
                row[name] = None
            elif kind is ColumnType.DOUBLE:
                row[name] = rng.random() * 100
            elif kind in (ColumnType.LONG, ColumnType.INTEGER):
                row[name] = rng.randrange(-1000, 1000)
            elif kind is ColumnType.BOOLEAN:
                row[name] = rng.random() < 0.5
            elif kind is ColumnType.STRING:
                row[name] = rng.choice(cities)
            else:
                row[name] = (start + dt.timedelta(seconds=rng.randrange(10**7))).isoformat()
        records.append(row)
    return records


def columns_of(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in records] for name in records[0]}


def best_seconds_per_call(call: Callable[[], object], repeat: int) -> float:
    call()  # warm up
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(0.2 / once))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per case; the best counts")
    args = parser.parse_args()
    rng = random.Random(20261121)
    cases = [("20 doubles", InputValidator(doubles_signature()), doubles_records),
             ("mixed 20 columns", InputValidator(mixed_signature()), mixed_records)]
    print(f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"pandas {pd.__version__}, {platform.machine()}\n")
    print("| signature | payload | rows | time per call | rows/s |")
    print("|---|---|---:|---:|---:|")
    for label, validator, make in cases:
        for n in SIZES:
            records = make(n, rng)
            for form, payload in (("records", records), ("columns", columns_of(records))):
                frame = validator.validate(payload)
                assert frame.shape == (n, len(validator.signature.inputs))
                seconds = best_seconds_per_call(lambda v=validator, p=payload: v.validate(p),
                                                args.repeat)
                print(f"| {label} | {form} | {n:,} | {seconds * 1e6:,.1f} µs "
                      f"| {n / seconds:,.0f} |")


if __name__ == "__main__":
    main()
