"""What one prediction request costs in instructions, monitoring off and on (or a split).

On a shared machine two runs of the same server can differ by 40%; instruction counts do
not depend on the neighbours. This runs the app in one process (``asgi.build_app``, the
benchmark's LR pipeline, 64 in-memory clients, one-row requests, OpenBLAS on one thread)
under ``valgrind --tool=callgrind`` twice per setting, with a short and a long run of
requests after the same warm-up; the difference of the two totals divided by the
requests between them is what one request costs, start-up and the final flush (leaving
the app flushes what is buffered) counted in both. What runs by the clock is quieted
(``QUIET``), so that the count does not depend on how fast the machine is.

    .venv/bin/python benchmarks/monitoring/instructions.py [--short 640 --long 3200]
    PYTHONPATH=$TREE/src .venv/bin/python benchmarks/monitoring/instructions.py  # another tree

Needs valgrind. Takes about five minutes (the app runs ~50x slower under callgrind).
``--settings off,everything`` chooses the settings (``single,canary,shadow``: a 90/10
canary and a 10% shadow of a second version, against one version, with monitoring as it
comes), the first compared with the others; ``--keep DIR`` keeps the callgrind outputs
(``callgrind_annotate`` splits them by function and library).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rollouts"))
sys.path.insert(0, str(HERE.parent / "serving"))

# label -> (the servers' environment, the deployment: split.configure's names)
SETTINGS: dict[str, tuple[dict[str, str], str | None]] = {
    "off": ({"MODELHOST_PREDICTION_LOG": "false", "MODELHOST_MONITOR_PROFILES": "false"},
            None),
    "profiles": ({"MODELHOST_PREDICTION_LOG": "false"}, None),
    "everything": ({"MODELHOST_PREDICTION_LOG_MAX_PER_S": "1000000"}, None),
    "single": ({}, None),  # monitoring as it comes (the log capped at 1,000/s)
    "canary": ({}, "canary 90/10"),
    "shadow": ({}, "shadow 10%"),
}
# Background work that runs by the clock (the routing table's reload, the flusher, the
# alert, rollout and job loops) would count more the slower the run: under callgrind,
# and on a busy machine, what is counted then depends on the neighbours again. Quieted,
# the flush of the log and the profiles runs once, when the app stops (counted).
QUIET = {"MODELHOST_RELOAD_INTERVAL_S": "3600", "MODELHOST_MONITOR_FLUSH_S": "60",
         "MODELHOST_ALERTS": "false", "MODELHOST_JOBS": "false",
         "MODELHOST_ROLLOUTS": "false"}
_CLIENTS = 64
_WARM_UP = 640


def drive(requests: int) -> None:
    """Serve ``_WARM_UP`` and then ``requests`` one-row requests through the app of the
    home in ``MODELHOST_HOME`` (run inside callgrind)."""
    import orjson
    from memory_client import Replies, clients, post_scope
    from split import COLUMNS, probe_row

    from modelhost.asgi import build_app
    from modelhost.config import Settings

    app = build_app(Settings())
    body = orjson.dumps({"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]})
    path = "/v1/models/bench-lr/predict"
    replies = Replies(body)

    async def run() -> None:
        async with app.running():
            while not replies.statuses or replies.statuses[-1] != 200:  # until loaded
                await asyncio.sleep(0.1)
                await app(post_scope(path, body), replies.receive, replies.send)
            replies.statuses.clear()
            for count in (_WARM_UP, requests):
                await clients(app, [post_scope(path, body) for _ in range(count)], replies,
                              _CLIENTS)

    asyncio.run(run())
    if set(replies.statuses) != {200}:
        raise SystemExit(f"answers other than 200: {sorted(set(replies.statuses))}")


def counted(home: Path, env: dict[str, str], requests: int, out: Path) -> int:
    """Instructions of one callgrind run of :func:`drive`."""
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--drive", str(requests)],
        env={**os.environ, **QUIET, **env, "MODELHOST_HOME": str(home),
             "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"no total in {out}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="off,everything")
    parser.add_argument("--short", type=int, default=640)
    parser.add_argument("--long", type=int, default=3200)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR")
    parser.add_argument("--drive", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(args.drive)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    from split import configure, prepare

    import modelhost

    print(f"modelhost from {Path(modelhost.__file__).parent.parent.name}/", file=sys.stderr)
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        outputs = args.keep or root
        outputs.mkdir(parents=True, exist_ok=True)
        for label in args.settings.split(","):
            home = root / label
            os.environ["MODELHOST_HOME"] = str(home)
            env, deployment = SETTINGS[label]
            prepare(home, "lr-pipeline")
            if deployment is not None:
                configure(home, deployment)
            totals = [counted(home, env, n, outputs / f"callgrind.{label}.{n}")
                      for n in (args.short, args.long)]
            per_request[label] = (totals[1] - totals[0]) / (args.long - args.short)
            print(f"{label:>10}: {per_request[label]:,.0f} instructions per request "
                  f"({totals[0]:,} at {args.short}, {totals[1]:,} at {args.long})",
                  flush=True)
    first, *others = per_request
    for label in others:
        print(f"{label:>10}: {per_request[label] / per_request[first] - 1:+.1%} "
              f"against {first}")


if __name__ == "__main__":
    main()
