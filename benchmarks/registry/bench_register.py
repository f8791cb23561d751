"""Registration, load and predict costs of the model registry, SQLite next to PostgreSQL.

Run from the repository root:

    .venv/bin/python benchmarks/registry/bench_register.py [--repeats 10] [--no-postgres]

Three models trained on scikit-learn's bundled breast cancer data (569 rows, 30 double
columns; nothing is downloaded): a StandardScaler + LogisticRegression pipeline, a
100-tree RandomForestClassifier (n_jobs=1, random_state=0), and the same pipeline
converted to ONNX with ``modelhost.flavors.onnx.convert_sklearn`` (registered with
``flavor="onnx"`` and a float32 input example, matching the graph's one float input).

Each database gets a fresh home in a temporary folder (its own artifact folder too):
SQLite is the embedded default; PostgreSQL is a temporary database
``modelhost_bench_<pid>`` created through the admin URL and dropped at the end (also on
errors). The same process measures, on each database:

1. ``client.registry.register(model, name=..., input_example=...)``: median and p90 wall
   time over ``--repeats`` registrations into one name (each one a new version), after
   one untimed warm-up registration; plus the artifact size.
2. ``client.registry.load(name, version)`` (fetch, sha256 verify, deserialize): median
   over ``--repeats`` after one warm-up.
3. predict throughput of the loaded model, in process, on batches of 1, 64 and 1024 rows
   (rows drawn from the data with a fixed seed): the best of 7 runs, each repeating the
   call for about 0.1 s.
4. 4 threads sharing one Client each register the pipeline 5 times into one new name,
   released together by a barrier: the total wall time, and an assertion that the 20
   versions are distinct.

Timings alternate between the databases (SQLite, PostgreSQL, then PostgreSQL, SQLite, ...)
so that background load on a shared machine hits both alike. Every timed call starts
after a ``gc.collect()``: a full collection of this process (which holds several random
forests) takes about 0.1 s, and without it whichever call happens to trigger one, on
either database, pays for garbage the others made.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import create_engine, text

from modelhost import Client, Settings
from modelhost.flavors.onnx import convert_sklearn

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SEED = 0
BATCHES = (1, 64, 1024)
THREADS = 4
PER_THREAD = 5
PREDICT_RUNS = 7


@dataclass(frozen=True)
class Case:
    label: str
    name: str  # the registered model name
    model: object
    example: pd.DataFrame
    reference: Any  # the scikit-learn model whose predictions the loaded one must match
    flavor: str | None = None


@dataclass
class CaseResult:
    register_s: list[float] = field(default_factory=list)
    load_s: list[float] = field(default_factory=list)
    size: int = 0
    rows_per_s: dict[int, float] = field(default_factory=dict)


@dataclass
class Db:
    """One database under test: its client and what was measured on it."""

    label: str
    client: Client
    migrate_s: float
    cases: dict[str, CaseResult] = field(default_factory=dict)
    concurrent_s: float = 0.0
    concurrent_versions: int = 0


def build_cases() -> tuple[list[Case], pd.DataFrame]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    rf = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=SEED).fit(X, y)
    onnx_model = convert_sklearn(lr, X.head(5))
    cases = [
        Case("LogisticRegression pipeline", "bench-lr", lr, X.head(5), lr),
        Case("RandomForest, 100 trees", "bench-rf", rf, X.head(5), rf),
        Case("LR pipeline as ONNX", "bench-onnx", onnx_model,
             X.head(5).astype(np.float32), lr, flavor="onnx"),
    ]
    return cases, X


def register(client: Client, case: Case, name: str | None = None) -> Any:
    kwargs = {"flavor": case.flavor} if case.flavor else {}
    return client.registry.register(case.model, name=name or case.name,
                                    input_example=case.example, **kwargs)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def best_rows_per_s(predict: Callable[[Any], Any], batch: Any, rows: int) -> float:
    predict(batch)  # warm up
    once, _ = timed(lambda: predict(batch))
    number = max(1, int(0.1 / max(once, 1e-7)))
    best = float("inf")
    for _ in range(PREDICT_RUNS):
        start = time.perf_counter()
        for _ in range(number):
            predict(batch)
        best = min(best, (time.perf_counter() - start) / number)
    return rows / best


def alternating(dbs: list[Db], repeats: int) -> Iterator[Db]:
    """Each database ``repeats`` times, alternating databases and their order, so that
    background load on a shared machine hits both sides alike."""
    for i in range(repeats):
        yield from (dbs if i % 2 == 0 else dbs[::-1])


def measure(dbs: list[Db], cases: list[Case], X: pd.DataFrame, repeats: int) -> None:
    rng = np.random.default_rng(SEED)
    batches = {n: X.iloc[rng.integers(0, len(X), size=n)].reset_index(drop=True)
               for n in BATCHES}
    for case in cases:
        results = {db.label: db.cases.setdefault(case.label, CaseResult()) for db in dbs}
        latest = {db.label: register(db.client, case).version for db in dbs}  # warm-up
        for db in alternating(dbs, repeats):
            gc.collect()  # see the module docstring
            start = time.perf_counter()
            version = register(db.client, case)
            results[db.label].register_s.append(time.perf_counter() - start)
            results[db.label].size = version.artifact_size
            latest[db.label] = version.version
        loaded = {db.label: db.client.registry.load(case.name, latest[db.label]).model
                  for db in dbs}  # warm-up
        for db in alternating(dbs, repeats):
            gc.collect()
            start = time.perf_counter()
            db.client.registry.load(case.name, latest[db.label])
            results[db.label].load_s.append(time.perf_counter() - start)
        dtype = case.example.dtypes.iloc[0]  # float64, or float32 for the ONNX graph
        expected = np.asarray(case.reference.predict(X))
        for db in dbs:
            # The loaded model must answer like the scikit-learn model it came from
            # (ONNX computes in float32: allow a rare flip at the decision boundary).
            got = np.asarray(loaded[db.label].predict(X.astype(dtype)))
            agreement = float((got == expected).mean())
            assert agreement >= (0.99 if case.flavor else 1.0), (db.label, case.label, agreement)
        for n, batch in batches.items():
            typed = batch.astype(dtype)
            for db in dbs:
                results[db.label].rows_per_s[n] = best_rows_per_s(
                    loaded[db.label].predict, typed, n)
    for db in dbs:
        concurrent(db, cases[0])


def concurrent(db: Db, case: Case) -> None:
    client = db.client
    name = "bench-concurrent"
    barrier = threading.Barrier(THREADS + 1)
    versions: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        for _ in range(PER_THREAD):
            try:
                v = register(client, case, name)
            except Exception as exc:  # collected and reported below
                with lock:
                    errors.append(exc)
            else:
                with lock:
                    versions.append(v.version)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    gc.collect()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    db.concurrent_s = time.perf_counter() - start
    assert not errors, f"{db.label}: {len(errors)} concurrent registrations failed: {errors!r}"
    assert len(versions) == THREADS * PER_THREAD, (db.label, versions)
    assert len(set(versions)) == THREADS * PER_THREAD, f"{db.label}: duplicates in {versions}"
    stored = {v.version for v in client.registry.list_versions(name)}
    assert stored == set(versions), (db.label, sorted(stored), sorted(versions))
    db.concurrent_versions = len(set(versions))


def open_db(label: str, home: Path, db_url: str) -> Db:
    """A Client on a fresh home; constructing it migrates the empty database."""
    (home / "home").mkdir(parents=True)
    settings = Settings(home=home / "home", db_url=db_url, artifacts=str(home / "artifacts"))
    seconds, client = timed(lambda: Client(settings))
    return Db(label, client, seconds)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped on the way out, even after an error."""
    name = f"modelhost_bench_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def table(header: list[str], rows: list[list[str]], left: int = 1) -> None:
    """A Markdown table: the first ``left`` columns left-aligned, the rest right."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_tables(results: list[Db], cases: list[Case], repeats: int) -> None:
    names = [r.label for r in results]
    both = len(results) == 2
    med = statistics.median

    def ratio(values: list[float]) -> list[str]:
        """PostgreSQL over SQLite, when both ran."""
        return [f"{values[1] / values[0]:.2f}x"] if both else []

    print(f"### Registration (median and p90 of {repeats}, after 1 warm-up)\n")
    rows = []
    for case in cases:
        times = [r.cases[case.label].register_s for r in results]
        rows.append([case.label, f"{results[0].cases[case.label].size / 1024:,.1f} KiB",
                     *(f"{ms(med(t))} / {ms(p90(t))}" for t in times),
                     *ratio([med(t) for t in times])])
    table(["model", "artifact", *(f"{n} median / p90" for n in names),
           *(["PostgreSQL/SQLite (median)"] if both else [])], rows)

    print(f"\n### Load: fetch + sha256 verify + deserialize (median of {repeats})\n")
    rows = []
    for case in cases:
        medians = [med(r.cases[case.label].load_s) for r in results]
        rows.append([case.label, *(ms(m) for m in medians), *ratio(medians)])
    table(["model", *names, *(["PostgreSQL/SQLite"] if both else [])], rows)

    print("\n### Predict throughput of the loaded model, in process (rows/s, best of "
          f"{PREDICT_RUNS})\n")
    rows = [[case.label, f"{n:,}",
             *(f"{r.cases[case.label].rows_per_s[n]:,.0f}" for r in results)]
            for case in cases for n in BATCHES]
    table(["model", "rows per call", *(f"loaded from {n}" for n in names)], rows)

    total = THREADS * PER_THREAD
    print(f"\n### Concurrent registration: {THREADS} threads x {PER_THREAD} registrations of "
          "the LR pipeline into one new name, one shared Client\n")
    rows = [[r.label, ms(r.concurrent_s), ms(r.concurrent_s / total),
             f"{r.concurrent_versions}/{total}",
             ms(total * med(r.cases[cases[0].label].register_s))] for r in results]
    table(["database", "total", "per registration", "distinct versions",
           f"sequential estimate ({total} x median)"], rows)
    print("\nFresh database + migrations (Client construction): "
          + ", ".join(f"{r.label} {ms(r.migrate_s)}" for r in results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed registrations and loads per model and database")
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    random.seed(SEED)
    np.random.seed(SEED)  # pins anything that still uses numpy's global state
    started = time.perf_counter()
    cases, X = build_cases()
    with tempfile.TemporaryDirectory(prefix="modelhost-bench-") as tmp, ExitStack() as stack:
        sqlite_home = Path(tmp) / "sqlite"
        results = [open_db("SQLite", sqlite_home, f"sqlite:///{sqlite_home / 'modelhost.db'}")]
        stack.callback(results[0].client.close)
        if not args.no_postgres:
            try:
                url = stack.enter_context(postgres_database())
            except Exception as exc:
                print(f"cannot create a PostgreSQL database: {type(exc).__name__}: {exc}\n"
                      "(is PostgreSQL running on 127.0.0.1:5432? --no-postgres skips it)",
                      file=sys.stderr)
                raise
            results.append(open_db("PostgreSQL", Path(tmp) / "postgres", url))
            stack.callback(results[1].client.close)  # closed before the database is dropped
        measure(results, cases, X, args.repeats)
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, Python "
          f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"scikit-learn {sklearn.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs\n")
    print_tables(results, cases, args.repeats)
    print(f"\nBenchmark wall time (after imports): {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
