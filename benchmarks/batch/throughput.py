"""Batch scoring throughput: `modelhost batch` on a LocalCluster of two worker processes
against a bare in-process `predict` over the same Parquet file, in one run, alternated
(ABBA).

    .venv/bin/python benchmarks/batch/throughput.py [--rows 2000000] [--rounds 2]
        [--models lr-pipeline,rf] [--calls] [--running-only]

The models are the serving benchmark's (20 float features): the LR pipeline
(StandardScaler + LogisticRegression) and the RandomForest (100 trees, n_jobs=1). The
file is written once (Parquet, 8 row groups). In-process: read the file and `predict` on
the whole frame, in one process (one core: n_jobs=1, numpy's BLAS limited to one thread).
modelhost batch (which writes the probabilities too, and the input columns, as Parquet):
the whole command as a user runs it, cluster start included, and on an already running
cluster (`--scheduler`), both with two single-threaded workers; rows/s per core divides
by 2. Per CPU second counts the CPU time of every process of a run instead (the command,
its workers and the scheduler; for in-process, this process): on a shared machine whose
neighbours take CPU time away ("steal"), wall time moves with them, CPU time much less.
``--calls`` adds in-process `predict` in calls of 250,000 rows (the batch's own model
calls): a RandomForest's `predict` on a whole frame of tens of millions of rows makes a
large array per tree and slows down per row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core per process, in this one and in the workers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from common import COLUMNS, make_data, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PARTITION_ROWS = 250_000
CALLS = f"in-process, calls of {PARTITION_ROWS:,} rows"
MODELHOST = ROOT / ".venv" / "bin" / "modelhost"


def write_data(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    X, _, _, _ = make_data()
    rng = np.random.default_rng(0)
    picked = X[rng.integers(0, len(X), size=rows)] + rng.normal(0, 0.01, (rows, X.shape[1]))
    pd.DataFrame(picked, columns=COLUMNS).to_parquet(path, row_group_size=rows // 8)


def in_process(model: object, path: Path, call_rows: int | None = None
               ) -> tuple[float, float]:
    """Seconds and CPU seconds of reading ``path`` and predicting on it here: on the
    whole frame, or in calls of ``call_rows`` rows."""
    import pandas as pd

    started, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_parquet(path)
    step = call_rows or len(frame)
    for start in range(0, len(frame), step):
        model.predict(frame.iloc[start:start + step])  # type: ignore[attr-defined]
    return time.perf_counter() - started, time.process_time() - cpu


def cluster_cpu(cluster: Any) -> float:
    """CPU seconds so far of a LocalCluster's worker processes and of this process (its
    scheduler runs here)."""
    import psutil

    total = time.process_time()
    for nanny in cluster.workers.values():
        times = psutil.Process(nanny.process.pid).cpu_times()
        total += times.user + times.system
    return total


def batch(env: dict[str, str], name: str, path: Path, out: Path,
          scheduler: str | None, cluster: Any = None) -> tuple[float, float]:
    """Seconds and CPU seconds of the command, its own cluster's included (its worker
    processes are its children) or, with ``scheduler``, those of ``cluster``'s workers
    and scheduler during the command."""
    args = [str(MODELHOST), "batch", name, "--version", "latest", "--input", str(path),
            "--output", str(out),
            "--overwrite", "--json", "--workers", "2", "--partition-rows", str(PARTITION_ROWS)]
    if scheduler:
        args += ["--scheduler", scheduler]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    shared = cluster_cpu(cluster) if scheduler else 0.0
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if scheduler:
        cpu += cluster_cpu(cluster) - shared
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    summary = json.loads(done.stdout)
    assert summary["rejected"] == 0, summary
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default="lr-pipeline,rf")
    parser.add_argument("--calls", action="store_true",
                        help="also predict in process in calls of 250,000 rows (the "
                             "batch's model calls): against the whole frame at once, "
                             "which slows down per row on large inputs")
    parser.add_argument("--running-only", action="store_true",
                        help="only `modelhost batch` on the running cluster (to compare "
                             "two trees side by side)")
    parser.add_argument("--dask-malloc", action="store_true",
                        help="the running cluster's workers keep Dask's default "
                             "MALLOC_TRIM_THRESHOLD_ instead of the settings docs/scaling.md "
                             "recommends")
    args = parser.parse_args()
    import dask
    from dask.distributed import LocalCluster

    from modelhost import Client, Settings

    X, y, _, _ = make_data()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    # The running cluster's workers as docs/scaling.md recommends (what the command's
    # own cluster gets): glibc's allocator keeps large arrays for reuse.
    malloc = {} if args.dask_malloc else {
        "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 32 << 20,
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 256 << 20}
    with dask.config.set(malloc):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    with tempfile.TemporaryDirectory() as tmp, cluster:
        folder = Path(tmp)
        data = folder / "rows.parquet"
        write_data(data, args.rows)
        home = folder / "home"
        models = {}
        with Client(Settings(home=home)) as client:
            for kind in args.models.split(","):
                model = train(kind, X, y)
                models[kind] = model
                from common import frame

                client.registry.register(model, name=kind, input_example=frame(X[:5]))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELHOST_", "MALLOC_"))}  # the run's own choice
        env["MODELHOST_HOME"] = str(home)
        for kind, model in models.items():
            order = ["in-process", "batch", "batch on a running cluster"]
            if args.calls:
                order.insert(1, CALLS)
            if args.running_only:
                order = ["batch on a running cluster"]
            times: dict[str, list[tuple[float, float]]] = {which: [] for which in order}
            for r in range(args.rounds):
                for which in (order if r % 2 == 0 else order[::-1]):
                    if which.startswith("in-process"):
                        times[which].append(in_process(
                            model, data, PARTITION_ROWS if which == CALLS else None))
                    else:
                        scheduler = cluster.scheduler_address if "running" in which \
                            else None
                        times[which].append(batch(env, kind, data, folder / "out",
                                                  scheduler, cluster))
                    seconds, cpu = times[which][-1]
                    print(kind, which, f"{seconds:.2f} s, {cpu:.2f} CPU s", flush=True)
            results[kind] = times
    if args.running_only:
        return
    print()
    print(f"{args.rows:,} rows, {args.rounds} rounds (ABBA), medians; per core: rows/s "
          "over 2 against in-process; per CPU second: rows per CPU second (all processes "
          "of the run) against in-process")
    print("| model | in-process (1 core) | `batch` (2 workers) | per core | per CPU second "
          "| on a running cluster | per core | per CPU second |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, times in results.items():
        def median(which: str, i: int, times: dict[str, list[tuple[float, float]]] = times
                   ) -> float:
            return statistics.median(t[i] for t in times[which])

        base, base_cpu = median("in-process", 0), median("in-process", 1)
        cells = [f"{args.rows / base:,.0f} rows/s"]
        for which in ("batch", "batch on a running cluster"):
            cells += [f"{args.rows / median(which, 0):,.0f} rows/s",
                      f"{base / median(which, 0) / 2:.2f}",
                      f"{base_cpu / median(which, 1):.2f}"]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    for kind, times in results.items():
        if CALLS in times:
            calls = statistics.median(t[0] for t in times[CALLS])
            best = statistics.median(t[0] for t in times["batch on a running cluster"])
            print(f"{kind}: {CALLS}: {args.rows / calls:,.0f} rows/s; on a running "
                  f"cluster per core against it: {calls / best / 2:.2f}")


if __name__ == "__main__":
    main()
