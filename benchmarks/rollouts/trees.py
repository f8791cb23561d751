"""Two source trees of modelhost through the server, side by side: one `modelhost serve
--workers 2` per tree (each on its own copy of one home, with the same setting), loaded
in turn by wrk at 64 connections in ABBA order, so that both see the same machine to
within seconds. For a change on the prediction path, against the tree before it.

Run from the repository root (wrk must be installed):

    OLD=$(mktemp -d); git archive REV | tar -x -C $OLD
    .venv/bin/python benchmarks/rollouts/trees.py $OLD/src [--config "canary 90/10"] \
        [--rounds 8] [--monitoring off|default]

It prints requests per second, p99 and the server's CPU time per request for each run,
then per round this tree's (the one on the path of the running Python) requests per
second and CPU time per request as shares of the other tree's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from split import interleaved

MONITORING = {"off": {"MODELHOST_PREDICTION_LOG": "false", "MODELHOST_MONITOR_PROFILES": "false"},
              "default": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="the other tree's src folder")
    parser.add_argument("--config", default="single",
                        help="single, canary 90/10, canary 99/1 or shadow 10%%")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--model", default="lr-pipeline", choices=["lr", "lr-pipeline"])
    parser.add_argument("--monitoring", default="off", choices=list(MONITORING))
    args = parser.parse_args()
    other = str(Path(args.other).resolve())
    results = interleaved(
        [(tree, args.config, {"PYTHONPATH": path, **MONITORING[args.monitoring]})
         for tree, path in (("this", ""), ("other", other))],
        model=args.model, rounds=args.rounds, duration=args.duration)
    pairs = list(zip(results["this"], results["other"], strict=True))
    for what, key in (("requests/s", "rps"), ("CPU per request", "cpu_us")):
        shares = [a[key] / b[key] for a, b in pairs]
        print(f"{args.config}, this tree's {what} / the other's: "
              + ", ".join(f"{s:.1%}" for s in shares)
              + f" (median {statistics.median(shares):.1%})")


if __name__ == "__main__":
    main()
