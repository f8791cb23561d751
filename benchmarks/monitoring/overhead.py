"""What monitoring costs the prediction path: one `modelhost serve --workers 2` per
setting, started afresh, the benchmark's 20-feature model (a LogisticRegression, a
pipeline of scaling and one, or a RandomForest), one-row requests from wrk at 64
connections; rounds alternate monitoring off and everything on (live profiles and a 100%
prediction log).

Run from the repository root (wrk must be installed):

    .venv/bin/python benchmarks/monitoring/overhead.py [--model lr-pipeline] [--rounds 3]

It prints requests per second, p99, and the server's CPU time per request (all its
processes, from /proc) per run, then each round's ratios to the run with monitoring off.

On a machine whose speed drifts within minutes, ``--interleave N`` keeps both servers
running side by side (each on its own copy of the home) and loads them in turn, N pairs
of ``--duration`` seconds in ABBA order, each load followed by a pause that lets the
server's flush of what it buffered finish before the other is loaded (its CPU time is
counted with the load): the two settings then see the same machine to within seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rollouts"))
sys.path.insert(0, str(HERE.parent / "serving"))

from run import process_tree, tree_cpu_seconds  # noqa: E402
from split import (  # noqa: E402
    COLUMNS,
    prepare,
    probe_row,
    serve_and_load,
    serving,
    show,
    wrk_url,
)

SETTINGS: dict[str, dict[str, str]] = {
    "off": {"MODELHOST_PREDICTION_LOG": "false", "MODELHOST_MONITOR_PROFILES": "false"},
    "everything": {"MODELHOST_PREDICTION_LOG_MAX_PER_S": "1000000"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lr", choices=["lr", "lr-pipeline", "rf"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interleave", type=int, default=0, metavar="PAIRS",
                        help="both servers side by side, loaded in turn PAIRS times each")
    args = parser.parse_args()
    if args.interleave:
        interleaved(args)
        return
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        prepare(home, args.model)
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(
            {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
        for round_ in range(1, args.rounds + 1):
            for setting in SETTINGS:
                result = serve_and_load(home, body_file, args.duration,
                                        env=SETTINGS[setting],
                                        args=("--workers", str(args.workers)))
                results[setting].append(result)
                show(f"round {round_} {setting:>10}", result)
    report(results)


def interleaved(args: argparse.Namespace) -> None:
    pause_s = 3.0  # longer than the flush interval (2 s): a load's flush is its own
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        first = Path(tmp) / "off"
        prepare(first, args.model)
        shutil.copytree(first, Path(tmp) / "everything")
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(
            {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
        servers = {s: stack.enter_context(serving(
            Path(tmp) / s, env=SETTINGS[s], args=("--workers", str(args.workers))))
            for s in SETTINGS}
        for url, _ in servers.values():
            wrk_url(url, body_file, 2)  # warm-up
        time.sleep(pause_s)
        for pair in range(1, args.interleave + 1):
            order = list(SETTINGS) if pair % 2 else list(reversed(SETTINGS))
            for setting in order:
                url, pid = servers[setting]
                tree = process_tree(pid)
                cpu = tree_cpu_seconds(tree)
                result = wrk_url(url, body_file, args.duration)
                time.sleep(pause_s)
                result["cpu_us"] = (tree_cpu_seconds(tree) - cpu) / result["requests"] * 1e6
                results[setting].append(result)
                show(f"pair {pair} {setting:>10}", result)
    report(results)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    off, on = results["off"], results["everything"]
    ratios = [b["rps"] / a["rps"] for a, b in zip(off, on, strict=True)]
    cpu = [b["cpu_us"] / a["cpu_us"] for a, b in zip(off, on, strict=True)]
    mean_ratio = statistics.fmean(b["rps"] for b in on) / statistics.fmean(a["rps"] for a in off)
    print("everything / off per round: " + ", ".join(f"{r:.1%}" for r in ratios)
          + f" (median {statistics.median(ratios):.1%}, ratio of the means {mean_ratio:.1%})")
    print("server CPU per request, everything / off: " + ", ".join(f"{r:.1%}" for r in cpu)
          + f" (median {statistics.median(cpu):.1%})")


if __name__ == "__main__":
    main()
