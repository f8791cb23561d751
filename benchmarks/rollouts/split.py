"""What a traffic split costs the prediction path: one `modelhost serve --workers 2`, the
benchmark's LogisticRegression (20 features, benchmarks/serving/common.py) registered
twice, and rounds of wrk at 64 connections alternating a single version, a 90/10 canary
of the second and a 10% shadow of it (the controller off, so the split holds).

Run from the repository root (wrk must be installed):

    .venv/bin/python benchmarks/rollouts/split.py [--rounds 3] [--duration 8]

It prints requests per second and p99 per run and each round's ratio to the single
version's run.

On a machine whose speed drifts within minutes, ``--interleave N`` runs one server per
setting side by side (each on its own copy of the home, configured once) and loads them
in turn, N rounds of ``--duration`` seconds in ABBA order, so that the settings compared
see the same machine to within seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
SERVING = HERE.parent / "serving"
sys.path.insert(0, str(SERVING))

from common import COLUMNS, frame, make_data, probe_row, train  # noqa: E402
from run import process_tree, tree_cpu_seconds  # noqa: E402

import modelhost  # noqa: E402

_WRK_JSON = re.compile(r"^BENCH_JSON (\{.*\})$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(home: Path, kind: str = "lr") -> None:
    """The model of ``kind`` (common.train) registered twice as ``bench-lr``, 1.0.0 in
    production."""
    X, y, _, _ = make_data()
    client = modelhost.Client(modelhost.Settings(home=home))
    for _ in range(2):
        mv = client.registry.register(train(kind, X, y), name="bench-lr",
                                      input_example=frame(X[:5]))
    client.transition_stage("bench-lr", "1.0.0", "staging")
    client.transition_stage("bench-lr", "1.0.0", "production")
    assert mv.version == "1.0.1"
    client.close()


def configure(home: Path, config: str) -> None:
    client = modelhost.Client(modelhost.Settings(home=home))
    try:
        if client.rollouts.status("bench-lr").state.running:
            client.rollouts.act("bench-lr", "abort")
        if config.startswith("canary"):  # "canary 90/10", "canary 99/1"
            share = int(config.split("/")[1])
            client.deploy("bench-lr", "1.0.1", strategy="canary", steps=[share, 100])
        elif config == "shadow 10%":
            client.deploy("bench-lr", "1.0.1", strategy="shadow", fraction=0.1)
    finally:
        client.close()


def wait_ready(port: int) -> None:
    wait_ready_url(f"http://127.0.0.1:{port}")


def wait_ready_url(url: str, verify: Any = True) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become ready")


@contextlib.contextmanager
def serving(home: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
            verify: Any = True) -> Iterator[tuple[str, int]]:
    """One `modelhost serve` started afresh on ``home`` (``args`` added, ``env`` over
    ours, the rollout controller off; HTTPS when given a certificate), until ready:
    its URL and process id; stopped on the way out."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("modelhost")), "serve", "--host",
               "127.0.0.1", "--port", str(port), *args]
    scheme = "https" if "--ssl-certfile" in args else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    server = subprocess.Popen(
        command, env={**os.environ, "MODELHOST_HOME": str(home), "MODELHOST_ROLLOUTS": "false",
                      **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready_url(url, verify)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def serve_and_load(home: Path, body_file: Path, seconds: int, *,
                   env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                   verify: Any = True) -> dict[str, Any]:
    """``serving`` on ``home``, a 2 s warm-up, then wrk for ``seconds``: its result with
    the server's CPU time per request."""
    with serving(home, env=env, args=args, verify=verify) as (url, pid):
        wrk_url(url, body_file, 2)  # warm-up
        return load_measured(url, pid, body_file, seconds)


def load_measured(url: str, pid: int, body_file: Path, seconds: int) -> dict[str, Any]:
    """``wrk_url`` for ``seconds``: its result with the CPU time per request of the
    server (process ``pid`` and its children) under that load."""
    tree = process_tree(pid)
    cpu = tree_cpu_seconds(tree)
    result = wrk_url(url, body_file, seconds)
    result["cpu_us"] = (tree_cpu_seconds(tree) - cpu) / result["requests"] * 1e6
    return result


def show(label: str, result: dict[str, Any]) -> None:
    print(f"{label}: {result['rps']:>9,.0f} req/s, p99 {result['p99_ms']:.1f} ms, "
          f"{result['errors']} errors, server CPU {result['cpu_us']:.1f} µs per request",
          flush=True)


def wait_for_split(url: str, config: str) -> None:
    """Until both workers answer as configured (the routing reloads every 0.5 s and the
    candidate loads before the weights move)."""
    want = {"1.0.0", "1.0.1"} if config.startswith("canary") else {"1.0.0"}
    body = {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = set()
        for _ in range(200 if config != "canary 99/1" else 1000):
            with httpx.Client(headers={"Connection": "close"}) as http:
                r = http.post(f"{url}/v1/models/bench-lr/predict", json=body)
                seen.add(r.headers.get("x-model-version"))
        if seen == want:
            time.sleep(1.0)  # the other worker, and a shadow loading
            return
        time.sleep(0.5)
    raise SystemExit(f"{config}: the server answered with {seen}, not {want}")


def wrk(port: int, body_file: Path, seconds: int) -> dict[str, Any]:
    return wrk_url(f"http://127.0.0.1:{port}", body_file, seconds)


def wrk_url(url: str, body_file: Path, seconds: int) -> dict[str, Any]:
    """wrk at 64 connections posting ``body_file`` to bench-lr at ``url`` (http or
    https): requests per second, requests, p99 and non-2xx answers."""
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "5s", "--latency", "-s",
         str(SERVING / "post.lua"), f"{url}/v1/models/bench-lr/predict"],
        env={**os.environ, "WRK_BODY_FILE": str(body_file)}, capture_output=True,
        text=True, check=True, timeout=seconds + 60).stdout
    match = _WRK_JSON.search(out)
    if match is None:
        raise SystemExit(f"wrk output not understood: {out[-500:]}")
    data: dict[str, Any] = json.loads(match.group(1))
    return {"rps": data["requests"] / (data["duration_us"] / 1e6),
            "requests": data["requests"], "p99_ms": data["p99_us"] / 1000,
            "errors": data["status_errors"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--model", default="lr", choices=["lr", "lr-pipeline"],
                        help="a LogisticRegression, or a pipeline of scaling and one")
    parser.add_argument("--configs", default="canary 90/10,shadow 10%",
                        help="compared with a single version: canary 90/10, canary 99/1, "
                             "shadow 10%% (comma-separated)")
    parser.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                        help="one server per setting, side by side, loaded in turn")
    args = parser.parse_args()
    configs = ["single", *args.configs.split(",")]
    if args.interleave:
        report(interleaved([(c, c, {}) for c in configs], model=args.model,
                           rounds=args.interleave, duration=args.duration))
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        prepare(home, args.model)
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(
            {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
        port = free_port()
        env = {**os.environ, "MODELHOST_HOME": str(home), "MODELHOST_RELOAD_INTERVAL_S": "0.5",
               "MODELHOST_ROLLOUTS": "false"}
        command = [str(Path(sys.executable).with_name("modelhost")), "serve", "--host",
                   "127.0.0.1", "--port", str(port), "--workers", "2"]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
        try:
            wait_ready(port)
            for round_ in range(1, args.rounds + 1):
                # ABBA: every other round in reverse, so that nothing (the prediction
                # log growing, the machine warming) favours whichever runs first.
                for config in (configs if round_ % 2 else list(reversed(configs))):
                    configure(home, config)
                    wait_for_split(f"http://127.0.0.1:{port}", config)
                    wrk(port, body_file, 2)  # warm-up
                    result = load_measured(f"http://127.0.0.1:{port}", server.pid,
                                           body_file, args.duration)
                    results[config].append(result)
                    show(f"round {round_} {config:>13}", result)
        finally:
            server.terminate()
            server.wait(timeout=30)
    report(results)


def interleaved(settings: list[tuple[str, str, dict[str, str]]], *, model: str,
                rounds: int, duration: int) -> dict[str, list[dict[str, Any]]]:
    """One server per setting (its label, its configuration, e.g. "canary 90/10", and
    its environment), each on its own copy of one home, side by side; then ``rounds``
    rounds of loading each in turn for ``duration`` seconds, in ABBA order: each
    label's results."""
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in settings}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(
            {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
        first = Path(tmp) / "0"
        prepare(first, model)
        servers = {}
        for i, (label, config, env) in enumerate(settings):
            home = Path(tmp) / str(i)
            if i:
                shutil.copytree(first, home)
            configure(home, config)
            servers[label] = stack.enter_context(serving(
                home, env={"MODELHOST_RELOAD_INTERVAL_S": "0.5", **env},
                args=("--workers", "2")))
            wait_for_split(servers[label][0], config)
        for url, _ in servers.values():
            wrk_url(url, body_file, 5)  # warm-up
        labels = list(results)
        for round_ in range(1, rounds + 1):
            for label in (labels if round_ % 2 else list(reversed(labels))):
                result = load_measured(*servers[label], body_file, duration)
                results[label].append(result)
                show(f"round {round_} {label:>13}", result)
                time.sleep(1.0)
    return results


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    """Each setting's ratios to the single version's run of the same round."""
    for config in list(results)[1:]:
        ratios = [c["rps"] / s["rps"] for s, c in zip(results["single"], results[config],
                                                       strict=True)]
        print(f"{config} / single per round: " + ", ".join(f"{r:.1%}" for r in ratios)
              + f" (median {statistics.median(ratios):.1%})")
        cpu = [c["cpu_us"] / s["cpu_us"] for s, c in zip(results["single"], results[config],
                                                          strict=True)]
        print(f"{config}: server CPU per request / single's: "
              + ", ".join(f"{r:.1%}" for r in cpu) + f" (median {statistics.median(cpu):.1%})")


if __name__ == "__main__":
    main()
