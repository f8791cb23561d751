"""Batch scoring throughput: `modelhost batch` on a LocalCluster of two worker processes
against a bare in-process `predict` + `predict_proba` over the same Parquet file, in one
run, alternated (ABBA).

    .venv/bin/python benchmarks/batch/throughput.py [--rows 2000000] [--rounds 2]

The models are the serving benchmark's (20 float features): the LR pipeline
(StandardScaler + LogisticRegression) and the RandomForest (100 trees, n_jobs=1). The
file is written once (Parquet, 8 row groups). In-process: read the file and `predict` on
the whole frame, in one process (one core: n_jobs=1, numpy's BLAS limited to one thread).
modelhost batch (which writes the probabilities too, and the input columns, as Parquet):
the whole command as a user runs it, cluster start included, and on an already running
cluster (`--scheduler`), both with two single-threaded workers; rows/s per core divides
by 2.
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
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core per process, in this one and in the workers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from common import COLUMNS, make_data, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODELHOST = ROOT / ".venv" / "bin" / "modelhost"


def write_data(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    X, _, _, _ = make_data()
    rng = np.random.default_rng(0)
    picked = X[rng.integers(0, len(X), size=rows)] + rng.normal(0, 0.01, (rows, X.shape[1]))
    pd.DataFrame(picked, columns=COLUMNS).to_parquet(path, row_group_size=rows // 8)


def in_process(model: object, path: Path) -> float:
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_parquet(path)
    model.predict(frame)  # type: ignore[attr-defined]
    return time.perf_counter() - started


def batch(env: dict[str, str], name: str, path: Path, out: Path,
          scheduler: str | None) -> float:
    args = [str(MODELHOST), "batch", name, "--version", "latest", "--input", str(path),
            "--output", str(out),
            "--overwrite", "--json", "--workers", "2", "--partition-rows", "250000"]
    if scheduler:
        args += ["--scheduler", scheduler]
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    summary = json.loads(done.stdout)
    assert summary["rejected"] == 0, summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from dask.distributed import LocalCluster

    from modelhost import Client, Settings

    X, y, _, _ = make_data()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True,
            dashboard_address=":0") as cluster:
        folder = Path(tmp)
        data = folder / "rows.parquet"
        write_data(data, args.rows)
        home = folder / "home"
        models = {}
        with Client(Settings(home=home)) as client:
            for kind in ("lr-pipeline", "rf"):
                model = train(kind, X, y)
                models[kind] = model
                from common import frame

                client.registry.register(model, name=kind, input_example=frame(X[:5]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
        env["MODELHOST_HOME"] = str(home)
        for kind, model in models.items():
            times: dict[str, list[float]] = {"in-process": [], "batch": [],
                                             "batch on a running cluster": []}
            for r in range(args.rounds):
                order = ["in-process", "batch", "batch on a running cluster"]
                for which in (order if r % 2 == 0 else order[::-1]):
                    if which == "in-process":
                        times[which].append(in_process(model, data))
                    else:
                        scheduler = cluster.scheduler_address if "running" in which \
                            else None
                        times[which].append(batch(env, kind, data, folder / "out",
                                                  scheduler))
                    print(kind, which, f"{times[which][-1]:.2f} s", flush=True)
            results[kind] = times
    print()
    print(f"{args.rows:,} rows, {args.rounds} rounds (ABBA), medians")
    print("| model | in-process (1 core) | modelhost batch (2 workers) | per core vs "
          "in-process | on a running cluster | per core vs in-process |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, times in results.items():
        base = args.rows / statistics.median(times["in-process"])
        cold = args.rows / statistics.median(times["batch"])
        warm = args.rows / statistics.median(times["batch on a running cluster"])
        print(f"| {kind} | {base:,.0f} rows/s | {cold:,.0f} rows/s | {cold / 2 / base:.2f} "
              f"| {warm:,.0f} rows/s | {warm / 2 / base:.2f} |")


if __name__ == "__main__":
    main()
