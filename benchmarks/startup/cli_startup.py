"""Start-up time of the command line: ``modelhost --help``, ``models list`` and ``stage``.

Run from the repository root with modelhost's virtualenv:

    .venv/bin/python benchmarks/startup/cli_startup.py               # 15 runs each
    .venv/bin/python benchmarks/startup/cli_startup.py --runs 30 --top 20
    .venv/bin/python benchmarks/startup/cli_startup.py --no-bytecode-cache
    .venv/bin/python benchmarks/startup/cli_startup.py --pythonpath /tmp/old/src  # a baseline

The script

1. registers one small scikit-learn model (iris, with an input example) in a temporary
   MODELHOST_HOME, so that ``models list`` has a row to print and ``stage`` has a
   version to move (it alternates ``staging`` and ``none``, so every call writes);
2. runs each command once to warm the caches, then ``--runs`` times as a fresh process
   (the ``modelhost`` script next to this interpreter) and prints the median, the
   spread (min, max, p90) of the wall time and the median CPU time of the child (user +
   system, from ``getrusage``: less sensitive than wall time to other work on a shared
   machine), with the load average before and after;
3. runs each command once more under ``python -X importtime`` and prints the time spent
   importing each top-level package, slowest first (importtime slows the run down).

Python compiles every module it imports unless a cached ``.pyc`` exists. An installed
package has them (pip writes them); when ``PYTHONDONTWRITEBYTECODE`` is set, the script
keeps compiled files in a temporary ``PYTHONPYCACHEPREFIX`` instead, so the figures are
those of an installed package. ``--no-bytecode-cache`` measures with compilation on
every run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "models list": ["models", "list"],
    "stage": ["stage", "iris", "1.0.0", "{stage}"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument("--top", type=int, default=12, help="imports listed per command")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="compile every module on every run")
    parser.add_argument("--pythonpath", type=Path, default=None,
                        help="import modelhost from this src folder instead (e.g. an older "
                        "commit: git archive COMMIT src | tar -x -C DIR; DIR/src)")
    args = parser.parse_args()
    script = Path(sys.executable).parent / "modelhost"
    if not script.is_file():
        sys.exit(f"no modelhost script next to {sys.executable}; run with the venv's python")
    with tempfile.TemporaryDirectory(prefix="modelhost-cli-bench-") as tmp:
        env = _environment(Path(tmp), cache=not args.no_bytecode_cache)
        if args.pythonpath is not None:
            env["PYTHONPATH"] = str(args.pythonpath.resolve())
        _register(Path(tmp) / "home")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, bytecode cache "
              f"{'off' if args.no_bytecode_cache else 'on'}, {args.runs} runs per command")
        print(f"load average before: {_load()}")
        print(f"\n{'command':<14} {'median s':>9} {'min':>6} {'p90':>6} {'max':>6} "
              f"{'CPU s':>6}")
        for label, argv in COMMANDS.items():
            walls, cpus = _time_command(script, argv, env, runs=args.runs)
            print(f"{label:<14} {statistics.median(walls):9.3f} {min(walls):6.3f} "
                  f"{_percentile(walls, 90):6.3f} {max(walls):6.3f} "
                  f"{statistics.median(cpus):6.3f}")
        print(f"\nload average after: {_load()}")
        for label, argv in COMMANDS.items():
            print(f"\nslowest imports of `modelhost {label}` (ms per package, -X importtime):")
            for ms, name in _importtime(script, argv, env)[:args.top]:
                print(f"  {ms:8.1f}  {name}")


def _environment(tmp: Path, *, cache: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
    env["MODELHOST_HOME"] = str(tmp / "home")
    if cache:
        if env.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "no-pycache")  # ignore caches on disk
    return env


def _register(home: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import modelhost as mh

    X, y = load_iris(return_X_y=True, as_frame=True)
    X = X.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    model = LogisticRegression(max_iter=500).fit(X, y)
    with mh.Client(home=home) as client:
        client.registry.register(model, name="iris", input_example=X.head(5))


def _time_command(script: Path, argv: list[str], env: dict[str, str], *,
                  runs: int) -> tuple[list[float], list[float]]:
    walls: list[float] = []
    cpus: list[float] = []
    stages = ["staging", "none"]
    for i in range(runs + 1):  # the first run warms the caches and is not counted
        args = [a.replace("{stage}", stages[i % 2]) for a in argv]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([str(script), *args], env=env, capture_output=True,
                                text=True, check=False, timeout=120)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            sys.exit(f"modelhost {' '.join(args)} failed ({result.returncode}): "
                     f"{result.stderr.strip()}")
        if i:
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def _importtime(script: Path, argv: list[str], env: dict[str, str]) -> list[tuple[float, str]]:
    """Milliseconds spent importing each top-level package (the sum of its modules' own
    times, so nothing is counted twice), slowest first, and the total."""
    args = [a.replace("{stage}", "staging") for a in argv]
    result = subprocess.run([sys.executable, "-X", "importtime", str(script), *args],
                            env=env, capture_output=True, text=True, check=False,
                            timeout=120)
    spent: dict[str, float] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = (part.strip() for part in line.split("|"))
        package = name.split(".")[0]
        spent[package] = spent.get(package, 0.0) + int(own.removeprefix("import time:")) / 1000
    ranked = sorted(((ms, name) for name, ms in spent.items()), reverse=True)
    return [(sum(spent.values()), "(all imports)"), *ranked]


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
