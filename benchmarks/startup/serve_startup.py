"""Start-up time of ``modelhost serve``: when /healthz first answers, when /readyz is 200.

Run from the repository root with modelhost's virtualenv:

    .venv/bin/python benchmarks/startup/serve_startup.py              # 5 runs, median
    .venv/bin/python benchmarks/startup/serve_startup.py --runs 3 --importtime

The script

1. registers 7 small production models in a template MODELHOST_HOME: four scikit-learn
   models saved with skops (iris, wine, breast cancer, diabetes) and three MLflow folders
   written by ``mlflow.sklearn.save_model`` (skops format);
2. for each run, copies the template to a fresh home, starts ``modelhost serve`` (one
   worker, free loopback port) and polls ``/healthz`` and ``/readyz`` every 10 ms from the
   moment the process was spawned; checks that ``/readyz`` lists all 7 as serving;
3. prints the seconds to the first /healthz answer and to /readyz 200 per run and their
   medians, with the CPU seconds the server process had used by then (read from
   /proc; less sensitive than wall time to other work on a shared machine).
   ``--importtime`` also prints the slowest imports of the last run (from
   ``python -X importtime``, which slows the run itself down).

Every server started is stopped (SIGTERM, then SIGKILL after 30 s), also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MODELHOST = Path(sys.executable).with_name("modelhost")
SKLEARN = ("iris", "wine", "breast_cancer", "diabetes")
MLFLOW = ("iris", "wine", "breast_cancer")


def build_home(home: Path, work: Path) -> list[str]:
    """Register the 7 production models in ``home``; returns their names."""
    import warnings

    import mlflow.sklearn
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modelhost import Client, Settings

    def fitted(name: str) -> tuple[object, object]:
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True, as_frame=True)
        X.columns = [str(c).replace(" ", "_").replace("(", "").replace(")", "")
                     for c in X.columns]
        last = Ridge() if name == "diabetes" else LogisticRegression(max_iter=2000)
        return make_pipeline(StandardScaler(), last).fit(X, y), X

    settings = Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                        artifacts=str(home / "artifacts"))
    names = []
    with Client(settings) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own notices while it saves
        registry = client.registry
        for name in SKLEARN:
            model, X = fitted(name)
            registry.register(model, name=f"sk-{name}", input_example=X.head(3))
            names.append(f"sk-{name}")
        for name in MLFLOW:
            model, X = fitted(name)
            folder = work / f"mlflow-{name}"
            mlflow.sklearn.save_model(model, folder, serialization_format="skops",
                                      input_example=X.head(3),
                                      pip_requirements=["scikit-learn", "skops"])
            registry.register(name=f"mlflow-{name}", path=folder)
            names.append(f"mlflow-{name}")
        for name in names:
            registry.transition(name, "1.0.0", "staging")
            registry.transition(name, "1.0.0", "production")
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Timing = tuple[float, float, float, float]  # wall and CPU s to /healthz, then to /readyz


def one_run(template: Path, where: Path, names: list[str], *,
            importtime: bool, timeout_s: float) -> Timing:
    """Wall and CPU seconds to the first /healthz answer and to /readyz 200."""
    import json

    home = where / "home"
    shutil.copytree(template, home)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHOST_")}
    env["MODELHOST_HOME"] = str(home)
    if importtime:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    base = f"http://127.0.0.1:{port}"
    with (where / "stdout").open("wb") as out, (where / "stderr").open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([str(MODELHOST), "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=where)
    try:
        healthz = ready = None
        healthz_cpu = ready_cpu = float("nan")
        while ready is None:
            now = time.perf_counter() - started
            if now > timeout_s or proc.poll() is not None:
                raise RuntimeError(f"no /readyz 200 after {now:.1f} s (exit {proc.poll()}); "
                                   f"see {where}")
            if healthz is None and status(f"{base}/healthz") is not None:
                healthz = time.perf_counter() - started
                healthz_cpu = cpu_seconds(proc.pid)
            if healthz is not None:
                answer = status(f"{base}/readyz")
                if answer is not None and answer[0] == 200:
                    ready = time.perf_counter() - started
                    ready_cpu = cpu_seconds(proc.pid)
                    serving = json.loads(answer[1])["serving"]
                    if sorted(serving) != sorted(names):
                        raise RuntimeError(f"ready, but not serving all: {answer[1].decode()}")
            time.sleep(0.01)
        return healthz or ready, healthz_cpu, ready, ready_cpu
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def slowest_imports(stderr: Path, count: int = 25) -> list[str]:
    rows = []
    for line in stderr.read_text(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            with contextlib.suppress(ValueError):
                rows.append((int(cumulative), name.rstrip()))
    rows.sort(reverse=True)
    return [f"{us / 1e6:7.3f} s  {name}" for us, name in rows[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--importtime", action="store_true",
                        help="print the slowest imports of the last run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelhost-startup-") as tmp:
        work = Path(tmp)
        template = work / "template"
        names = build_home(template, work)
        print(f"{len(names)} production models: {', '.join(names)}")
        runs: list[Timing] = []
        for run in range(args.runs):
            where = work / f"run-{run}"
            where.mkdir()
            last = args.importtime and run == args.runs - 1
            timing = one_run(template, where, names, importtime=last, timeout_s=args.timeout)
            print(f"run {run + 1}: {_text(timing)}" + (" (with -X importtime)" if last else ""))
            if not last:
                runs.append(timing)
            if last:
                print("slowest imports (cumulative) in the server process:")
                print("\n".join(slowest_imports(where / "stderr")))
        if runs:
            median = tuple(statistics.median(t[i] for t in runs) for i in range(4))
            print(f"median of {len(runs)}: {_text(median)} (goals: /healthz 1.5 s, /readyz "
                  f"4 s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")


def _text(t: tuple[float, ...]) -> str:
    return (f"/healthz after {t[0]:.2f} s ({t[1]:.2f} s CPU), "
            f"/readyz 200 after {t[2]:.2f} s ({t[3]:.2f} s CPU)")


if __name__ == "__main__":
    main()
