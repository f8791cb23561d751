"""What monitoring costs the prediction path: one `modelhost serve --workers 2` per
setting, started afresh, the benchmark's 20-feature model (a LogisticRegression, or a
pipeline of scaling and one), one-row requests from wrk at 64 connections; rounds
alternate monitoring off and everything on (live profiles and a 100% prediction log).

Run from the repository root (wrk must be installed):

    .venv/bin/python benchmarks/monitoring/overhead.py [--model lr-pipeline] [--rounds 3]

It prints requests per second, p99, and the server's CPU time per request (all its
processes, from /proc) per run, then each round's ratios to the run with monitoring off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rollouts"))
sys.path.insert(0, str(HERE.parent / "serving"))

from split import COLUMNS, prepare, probe_row, serve_and_load  # noqa: E402

SETTINGS: dict[str, dict[str, str]] = {
    "off": {"MODELHOST_PREDICTION_LOG": "false", "MODELHOST_MONITOR_PROFILES": "false"},
    "everything": {"MODELHOST_PREDICTION_LOG_MAX_PER_S": "1000000"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lr", choices=["lr", "lr-pipeline"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
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
                print(f"round {round_} {setting:>10}: {result['rps']:>9,.0f} req/s, "
                      f"p99 {result['p99_ms']:.1f} ms, {result['errors']} errors, "
                      f"server CPU {result['cpu_us']:.1f} µs per request", flush=True)
    off, on = results["off"], results["everything"]
    ratios = [b["rps"] / a["rps"] for a, b in zip(off, on, strict=True)]
    cpu = [b["cpu_us"] / a["cpu_us"] for a, b in zip(off, on, strict=True)]
    mean_ratio = statistics.fmean(b["rps"] for b in on) / statistics.fmean(a["rps"] for a in off)
    print("everything / off per round: " + ", ".join(f"{r:.1%}" for r in ratios)
          + f" (median {statistics.median(ratios):.1%}, ratio of the means {mean_ratio:.1%})")
    print("server CPU per request, everything / off: " + ", ".join(f"{r:.1%}" for r in cpu))


if __name__ == "__main__":
    main()
