"""What writing the prediction log costs per request in SQLite, the old layout against a
candidate one (the design experiment behind migration 0007, kept as it was run).

Run from the repository root:

    .venv/bin/python benchmarks/monitoring/log_layout.py [--requests 20000] [--rounds 4]

* ``row per request`` (the ``prediction_log`` before migration 0007): one ~600-byte row
  per request with its JSON inputs and outputs, a text primary key (the request id) and
  two indexes ((model, version, at) and (at)).
* ``chunks + id index`` (the candidate; the product's layout differs in details): one
  row per 500 requests holding their entries as one JSON array, indexed by (model,
  version, last time) and (last time), and a narrow ``WITHOUT ROWID`` table from
  request id to (chunk, position) for the feedback join.

Both encode the same one-row, 20-feature requests with orjson and insert them in one
transaction (WAL, synchronous=NORMAL, as the product's SQLite). It prints the
microseconds per request of each round and their median.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

COLUMNS = [f"f{i}" for i in range(20)]
CHUNK = 500
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def connect(path: Path, layout: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if layout == "row":
        db.execute("CREATE TABLE log (request_id TEXT PRIMARY KEY, model TEXT, version TEXT, "
                   "arm TEXT, at TEXT, rows INT, inputs TEXT, outputs TEXT)")
        db.execute("CREATE INDEX log_mva ON log (model, version, at)")
        db.execute("CREATE INDEX log_at ON log (at)")
    else:
        db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, model TEXT, version TEXT, "
                   "first_at REAL, last_at REAL, n INT, body TEXT)")
        db.execute("CREATE INDEX chunks_mva ON chunks (model, version, last_at)")
        db.execute("CREATE INDEX chunks_at ON chunks (last_at)")
        db.execute("CREATE TABLE ids (request_id TEXT PRIMARY KEY, chunk INT, pos INT) "
                   "WITHOUT ROWID")
    return db


def write_rows(db: sqlite3.Connection, requests: list[tuple[Any, ...]]) -> None:
    rows = [(rid, "m", "1.0.0", None, f"{at:.6f}", 1,
             orjson.dumps({"columns": COLUMNS, "data": x}, option=_NUMPY).decode(),
             orjson.dumps({"predictions": p, "probabilities": q}).decode())
            for rid, at, x, p, q in requests]
    db.execute("BEGIN")
    db.executemany("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")


def write_chunks(db: sqlite3.Connection, requests: list[tuple[Any, ...]]) -> None:
    db.execute("BEGIN")
    for start in range(0, len(requests), CHUNK):
        part = requests[start:start + CHUNK]
        body = orjson.dumps([list(r) for r in part], option=_NUMPY).decode()
        chunk = db.execute(
            "INSERT INTO chunks (model, version, first_at, last_at, n, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("m", "1.0.0", part[0][1], part[-1][1], len(part), body)).lastrowid
        db.executemany("INSERT INTO ids VALUES (?, ?, ?)",
                       [(r[0], chunk, i) for i, r in enumerate(part)])
    db.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    requests = [(uuid.uuid4().hex, time.time(), rng.normal(size=(1, 20)), [1], [[0.2, 0.8]])
                for _ in range(args.requests)]
    with tempfile.TemporaryDirectory() as folder:
        results: dict[str, list[float]] = {"row per request": [], "chunks + id index": []}
        for round_ in range(args.rounds):  # alternated, so drift hits both alike
            for name, layout, write in (("row per request", "row", write_rows),
                                        ("chunks + id index", "chunks", write_chunks)):
                db = connect(Path(folder) / f"{layout}{round_}.db", layout)
                started = time.perf_counter()
                write(db, requests)
                results[name].append((time.perf_counter() - started) / len(requests) * 1e6)
                db.close()
        for name, times in results.items():
            print(f"{name:>18}: {', '.join(f'{t:.2f}' for t in times)} µs/request "
                  f"(median {statistics.median(times):.2f})")


if __name__ == "__main__":
    main()
