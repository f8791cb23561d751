"""What the web console at /ui costs: each page's server time on a large registry, and the
prediction path's throughput while a console page polls.

Run from the repository root (wrk must be installed):

    .venv/bin/python benchmarks/console/bench_pages.py [--requests 30] [--phase 20]

1. **The registry.** A fresh MODELHOST_HOME (SQLite, the default) with ``--models`` (200)
   models and ``--versions`` (5,000) versions in all: ``model-000`` has ``--big`` (400)
   of them, the others share the rest (23 or 24 each); ``bench-lr`` is one of them. Every
   version is the serving benchmark's LogisticRegression (20 features,
   benchmarks/serving/common.py), fitted once and registered again and again through
   ``Client.register_model`` (the store is content-addressed: one artifact), with an
   input example, a few metrics, params and tags. The first version of a model infers its
   signature from the example; later ones pass that signature (the fastest path the public
   API offers: no inference, but the example is still validated and predicted on). Two
   processes register half the models each. Then 20 models get a production version (via
   staging), ``bench-lr`` a canary of its latest version against its production one,
   ``--runs`` (200) runs in 4 experiments with 6 params and 3 metrics over 20 steps, and 5
   API keys. The audit log has an entry for every change. The populated home is kept under
   ``--cache`` (one per size and database schema) and copied for the next run;
   ``--no-cache`` builds it afresh.
2. **Live traffic.** One ``modelhost serve`` (1 worker, the rollout controller off so the
   canary stays where it is) takes 300 one-row predictions: 10 for each production model,
   100 for ``bench-lr``; it is stopped after its profiles and prediction log are flushed.
   Done every run, since the model list shows the last 5 minutes' traffic.
3. **Pages, server time.** The real ASGI app (``modelhost.asgi.build_app``, auth off, the
   rollout loop off) in this process, through ``httpx.ASGITransport``: 3 warm-up rounds,
   then ``--requests`` rounds, each requesting every page once (the order rotated each
   round). The time is that of the whole request through the app (no network): median,
   p95 and max, against the goal of 150 ms. ``--profile`` then profiles every page over
   the goal (cProfile, with the console's worker-thread reads run inline so that the
   profile sees them) and prints where its time goes.
4. **Throughput while polling.** One ``modelhost serve --workers 1`` on a free port, wrk
   at 64 connections posting one row to ``/v1/models/bench-lr/predict`` (the canary:
   both versions serve) for ``--phase`` seconds per phase, after a warm-up; phases in
   ABBA order (off, on, on, off; with ``--rounds 2`` then on, off, off, on). In an "on"
   phase a thread GETs ``/ui/deployments/bench-lr/live`` every 2 s, as an open deployment
   page's htmx does (its latency is reported too; ``--poll`` polls other pages as well,
   e.g. ``/ui/models``, which no page polls: a harsher case). Requests per second per
   phase, the server's CPU time per request, and on/off ratios.

Every process started is stopped in a ``finally``. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import hashlib
import io
import json
import multiprocessing
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "serving"))
sys.path.insert(0, str(HERE.parent / "rollouts"))

from common import COLUMNS, frame, make_data, probe_row, train  # noqa: E402
from run import process_tree, tree_cpu_seconds  # noqa: E402
from split import free_port, wait_ready_url, wrk_url  # noqa: E402

import modelhost  # noqa: E402
from modelhost.config import Settings  # noqa: E402

GOAL_MS = 150.0
TARGET = "bench-lr"  # the model under a canary, the load's target (split.wrk_url posts here)
BIG = "model-000"
PRODUCTION_EVERY = 10  # every 10th model has a production version
EXPERIMENTS = ("churn", "fraud", "ranking", "pricing")
# What an open deployment page asks every 2 s (its htmx polls the live fragment; no other
# page polls). `--poll` adds others, e.g. the model list, for a harsher case.
POLLED = (f"/ui/deployments/{TARGET}/live",)
POLL_S = 2.0


# --- the registry ---------------------------------------------------------------------


def plan(models: int, versions: int, big: int) -> dict[str, int]:
    """Model name -> how many versions: ``BIG`` has ``big``, the rest share the others."""
    names = [BIG] + [f"model-{i:03d}" for i in range(1, models - 1)] + [TARGET]
    rest, extra = divmod(versions - big, models - 1)
    counts = {BIG: big}
    for i, name in enumerate(names[1:]):
        counts[name] = rest + (1 if i < extra else 0)
    assert sum(counts.values()) == versions and len(counts) == models
    return counts


def _register_some(home: str, counts: dict[str, int], seed: int) -> tuple[int, float]:
    """One process: register every version of the models in ``counts`` (in order)."""
    X, y, _, _ = make_data()
    model = train("lr", X, y)
    example = frame(X[:5])
    rng = np.random.default_rng(seed)
    client = modelhost.Client(home=home, migrate=False)
    done = 0
    start = time.perf_counter()
    try:
        for name, n in counts.items():
            signature = None
            for i in range(n):
                mv = client.register_model(
                    model, name=name, input_example=example, signature=signature,
                    metrics={"auc": float(0.8 + 0.15 * rng.random()),
                             "accuracy": float(0.7 + 0.2 * rng.random()),
                             "log_loss": float(0.2 + 0.3 * rng.random())},
                    params={"C": "1.0", "max_iter": "1000", "build": str(i)},
                    tags={"team": f"team-{sum(map(ord, name)) % 7}",
                          "data": f"2026-11-{1 + i % 28}"},
                    description=f"nightly retrain {i} of {name}")
                signature = mv.signature
                done += 1
    finally:
        client.close()
    return done, time.perf_counter() - start


def populate(home: Path, counts: dict[str, int], runs: int) -> dict[str, float]:
    """Fill a fresh home (see the module docstring); seconds per part."""
    took: dict[str, float] = {}
    client = modelhost.Client(home=home)  # creates and migrates the database
    client.close()
    names = list(counts)
    # Two processes, each half of the models (the big one in the first, balanced by count).
    halves: list[dict[str, int]] = [{}, {}]
    for name in sorted(names, key=lambda n: -counts[n]):
        smaller = min(halves, key=lambda h: sum(h.values()))
        smaller[name] = counts[name]
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(_register_some, [(str(home), h, i) for i, h in enumerate(halves)])
    took["register"] = time.perf_counter() - start
    registered = sum(r[0] for r in results)
    print(f"registered {registered:,} versions of {len(counts)} models in "
          f"{took['register']:.0f} s with 2 processes ({took['register'] / registered * 1e3:.0f}"
          f" ms per version of wall time; per process: "
          + ", ".join(f"{n:,} in {s:.0f} s" for n, s in results) + ")", flush=True)

    start = time.perf_counter()
    client = modelhost.Client(home=home)
    try:
        for k, name in enumerate(names):
            if k % PRODUCTION_EVERY and name != TARGET:
                continue
            count = counts[name]
            chosen = f"1.0.{count - 2}"  # the one before the latest is in production
            client.transition_stage(name, chosen, "staging")
            client.transition_stage(name, chosen, "production")
        for k, name in enumerate(names):
            if k % PRODUCTION_EVERY == 5:  # and a few latest versions in staging
                client.transition_stage(name, f"1.0.{counts[name] - 1}", "staging")
        client.deploy(TARGET, f"1.0.{counts[TARGET] - 1}", strategy="canary")
        rng = np.random.default_rng(1)
        for r in range(runs):
            experiment = EXPERIMENTS[r % len(EXPERIMENTS)]
            with client.tracking.start_run(
                    experiment, name=f"{experiment}-{r}",
                    params={"lr": f"{10.0 ** -int(rng.integers(1, 5)):g}",
                            "depth": int(rng.integers(2, 9)),
                            "batch": 2 ** int(rng.integers(5, 10)), "seed": r,
                            "optimizer": ("adam", "sgd")[r % 2], "features": 20}) as run:
                loss = 1.0
                for step in range(20):
                    loss *= float(0.8 + 0.15 * rng.random())
                    run.log_metrics({"loss": loss, "val_loss": loss * 1.1,
                                     "auc": 1.0 - loss / 2}, step=step)
        for i, role in enumerate(("admin", "deployer", "viewer", "viewer", "viewer")):
            client.keys.create(name=f"bench-key-{i}", role=role)
        took["stages, canary, runs, keys"] = time.perf_counter() - start
        audit = client.audit.verify()
        print(f"stages, canary, {runs} runs and keys in "
              f"{took['stages, canary, runs, keys']:.0f} s; audit log: {audit.entries:,} "
              f"entries", flush=True)
    finally:
        client.close()
    return took


def cache_key(models: int, versions: int, big: int, runs: int) -> str:
    """Size and the database schema (its migrations): a cached home of another schema is
    not reused."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src/modelhost/store/migrations/versions").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"m{models}-v{versions}-b{big}-r{runs}-{digest.hexdigest()[:12]}"


def prepared_home(work: Path, args: argparse.Namespace, counts: dict[str, int]) -> Path:
    home = work / "home"
    cached = Path(args.cache) / cache_key(args.models, args.versions, args.big, args.runs)
    if not args.no_cache and (cached / "READY").exists():
        shutil.copytree(cached / "home", home)
        print(f"using the populated home cached in {cached}", flush=True)
        return home
    populate(home, counts, args.runs)
    if not args.no_cache:
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(home, cached / "home")
        (cached / "READY").write_text(dt.datetime.now(dt.timezone.utc).isoformat())
        print(f"cached the populated home in {cached}", flush=True)
    return home


# --- a real server ----------------------------------------------------------------------


@contextmanager
def serving(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One `modelhost serve --workers 1` on a free port (rollout controller off); its URL."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("modelhost")), "serve", "--host",
               "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        command, env={**os.environ, "MODELHOST_HOME": str(home), "MODELHOST_ROLLOUTS": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready_url(url)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def live_traffic(home: Path, counts: dict[str, int]) -> None:
    names = list(counts)
    production = [n for k, n in enumerate(names) if k % PRODUCTION_EVERY == 0 and n != TARGET]
    body = {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}
    sent = errors = 0
    with serving(home) as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        for name in [*production * 10, *[TARGET] * 100]:
            r = http.post(f"/v1/models/{name}/predict", json=body)
            sent += 1
            errors += r.status_code != 200
        time.sleep(5)  # two flushes of the profiles and the prediction log (every 2 s)
    if errors:
        raise SystemExit(f"{errors} of {sent} predictions failed")
    print(f"live traffic: {sent} predictions ({len(production)} production models x 10, "
          f"{TARGET} x 100), no errors", flush=True)


# --- pages, in process ------------------------------------------------------------------


def pages(counts: dict[str, int]) -> dict[str, str]:
    typical = "model-001"
    n = counts[typical]
    return {
        "/ui/models": "/ui/models",
        f"/ui/models/{{name}} (largest, {counts[BIG]} versions)": f"/ui/models/{BIG}",
        f"/ui/models/{{name}} (typical, {n} versions)": f"/ui/models/{typical}",
        "/ui/models/{name}/compare": f"/ui/models/{typical}/compare?a=1.0.0&b=1.0.{n - 1}",
        "/ui/deployments/{name} (canary)": f"/ui/deployments/{TARGET}",
        "/ui/deployments/{name}/live (canary)": f"/ui/deployments/{TARGET}/live",
        "/ui/monitoring/{name}?window=24h": f"/ui/monitoring/{TARGET}?window=24h",
        "/ui/runs": "/ui/runs",
        "/ui/audit": "/ui/audit",
        # The chain's verification, which the audit page loads after it shows: it reads
        # and hashes every entry, so it grows with the log (not a page: no goal).
        "/ui/audit/verify (fragment)": "/ui/audit/verify",
        "/ui/keys": "/ui/keys",
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def _measure_pages(home: Path, urls: dict[str, str], rounds: int, profile: bool
                         ) -> tuple[dict[str, list[float]], dict[str, int]]:
    from modelhost.asgi import build_app

    app = build_app(Settings(home=home, rollouts=False))
    times: dict[str, list[float]] = {label: [] for label in urls}
    sizes: dict[str, int] = {}
    async with app.running(), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
            timeout=120) as http:
        labels = list(urls)
        for round_ in range(3 + rounds):
            shift = round_ % len(labels)
            for label in labels[shift:] + labels[:shift]:
                start = time.perf_counter()
                r = await http.get(urls[label])
                took = (time.perf_counter() - start) * 1e3
                if r.status_code != 200:
                    raise SystemExit(f"{urls[label]}: {r.status_code} {r.text[:300]}")
                sizes[label] = len(r.content)
                if round_ >= 3:
                    times[label].append(took)
        if profile:
            slow = [label for label in labels if statistics.median(times[label]) > GOAL_MS]
            for label in slow:
                await _profile_page(http, label, urls[label])
    return times, sizes


async def _profile_page(http: httpx.AsyncClient, label: str, url: str) -> None:
    """cProfile of 5 requests of ``url``, the pages' worker-thread calls run inline."""

    async def inline(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    original = asyncio.to_thread
    asyncio.to_thread = inline  # type: ignore[assignment]
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        for _ in range(5):
            await http.get(url)
        profiler.disable()
    finally:
        asyncio.to_thread = original
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"modelhost|jinja2|sqlalchemy|sqlite3|hashlib|json", 30)
    print(f"\n### Profile of {label} ({url}), 5 requests, cumulative\n\n```\n"
          f"{out.getvalue().strip()}\n```", flush=True)


def measure_pages(home: Path, counts: dict[str, int], rounds: int, profile: bool) -> bool:
    urls = pages(counts)
    times, sizes = asyncio.run(_measure_pages(home, urls, rounds, profile))
    print(f"\n### Pages: server time in process, {rounds} requests each after 3 warm-up "
          f"rounds\n")
    print("| page | median ms | p95 ms | max ms | HTML KiB | under 150 ms? |")
    print("|---|---:|---:|---:|---:|---|")
    ok = True
    for label, values in times.items():
        median, p95 = statistics.median(values), percentile(values, 95)
        met = p95 < GOAL_MS
        ok &= met
        verdict = "yes" if met else ("**no** (p95)" if median < GOAL_MS else "**no**")
        print(f"| `{label}` | {median:.1f} | {p95:.1f} | {max(values):.1f} | "
              f"{sizes[label] / 1024:.0f} | {verdict} |")
    print(flush=True)
    return ok


# --- throughput while polling -----------------------------------------------------------


class Poller:
    """GETs the polled pages every ``POLL_S`` while running; their latencies."""

    def __init__(self, url: str, polled: tuple[str, ...] = POLLED) -> None:
        self.url = url
        self.polled = polled
        self.stop = threading.Event()
        self.latencies: dict[str, list[float]] = {p: [] for p in polled}
        self.errors = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            next_at = time.monotonic()
            while not self.stop.is_set():
                for path in self.polled:
                    start = time.perf_counter()
                    try:
                        ok = http.get(path).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    self.latencies[path].append((time.perf_counter() - start) * 1e3)
                    self.errors += not ok
                next_at += POLL_S
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def throughput(home: Path, seconds: int, rounds: int, body_file: Path,
               polled: tuple[str, ...] = POLLED) -> None:
    order: list[str] = []
    for round_ in range(rounds):
        order += ["off", "on", "on", "off"] if round_ % 2 == 0 else ["on", "off", "off", "on"]
    results: list[dict[str, Any]] = []
    with serving(home) as (url, server):
        wrk_url(url, body_file, 5)  # warm-up (both arms of the canary load, batches settle)
        tree = process_tree(server.pid)
        for i, phase in enumerate(order, 1):
            cpu = tree_cpu_seconds(tree)
            poller = Poller(url, polled) if phase == "on" else None
            if poller is not None:
                with poller:
                    result = wrk_url(url, body_file, seconds)
                result["poll"] = poller.latencies
                result["poll_errors"] = poller.errors
            else:
                result = wrk_url(url, body_file, seconds)
            result["cpu_us"] = (tree_cpu_seconds(tree) - cpu) / result["requests"] * 1e6
            result["phase"] = phase
            results.append(result)
            polls = ""
            if poller is not None:
                polls = "; polls " + ", ".join(
                    f"{p} median {statistics.median(v):.0f} ms max {max(v):.0f} ms "
                    f"({len(v)})" for p, v in result["poll"].items())
            print(f"phase {i} {phase:>3}: {result['rps']:,.0f} req/s, p99 "
                  f"{result['p99_ms']:.1f} ms, {result['errors']} errors, server CPU "
                  f"{result['cpu_us']:.1f} µs/request{polls}", flush=True)
    print(f"\n### Throughput, {TARGET} (canary), wrk 64 connections, {seconds} s per phase\n")
    print("| phase | polling | requests/s | p99 ms | server CPU µs/request | non-2xx |")
    print("|---:|---|---:|---:|---:|---:|")
    for i, r in enumerate(results, 1):
        print(f"| {i} | {r['phase']} | {r['rps']:,.0f} | {r['p99_ms']:.1f} | "
              f"{r['cpu_us']:.1f} | {r['errors']} |")
    off = [r["rps"] for r in results if r["phase"] == "off"]
    on = [r["rps"] for r in results if r["phase"] == "on"]
    pairs = []
    for k in range(0, len(results), 2):  # (off, on) and (on, off): neighbours in time
        a, b = results[k], results[k + 1]
        on_r, off_r = (a, b) if a["phase"] == "on" else (b, a)
        pairs.append(on_r["rps"] / off_r["rps"])
    print(f"\non / off: mean {statistics.mean(on):,.0f} / {statistics.mean(off):,.0f} = "
          f"{statistics.mean(on) / statistics.mean(off):.1%}; neighbouring pairs "
          + ", ".join(f"{p:.1%}" for p in pairs)
          + f"; off phases range {min(off):,.0f}-{max(off):,.0f} "
          f"({(max(off) - min(off)) / statistics.mean(off):.1%} of their mean), on phases "
          f"{min(on):,.0f}-{max(on):,.0f}")
    on_phases = [r for r in results if r["phase"] == "on"]
    for path in polled:
        values = [v for r in on_phases for v in r["poll"][path]]
        print(f"polled {path} under load: {len(values)} requests, median "
              f"{statistics.median(values):.0f} ms, p95 {percentile(values, 95):.0f} ms, "
              f"max {max(values):.0f} ms (client-side, through the loaded server)")
    print(f"poll errors: {sum(r['poll_errors'] for r in on_phases)}", flush=True)


# --- main -------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.2f}, git {head}"
            f"{' + uncommitted changes in src/' if dirty else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--versions", type=int, default=5000)
    parser.add_argument("--big", type=int, default=400,
                        help="versions of the largest model (model-000)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=30, help="measured requests per page")
    parser.add_argument("--phase", type=int, default=20, help="seconds per throughput phase")
    parser.add_argument("--rounds", type=int, default=1,
                        help="ABBA rounds of the throughput (4 phases each)")
    parser.add_argument("--cache", default="/tmp/modelhost-console-bench")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="profile every page whose median is over the goal")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--poll", default=",".join(POLLED),
                        help="the pages polled every 2 s in the 'on' phases (comma-separated)")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_throughput:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}", flush=True)
    counts = plan(args.models, args.versions, args.big)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelhost-console-bench-") as tmp:
        work = Path(tmp)
        home = prepared_home(work, args, counts)
        live_traffic(home, counts)
        if not args.skip_pages:
            measure_pages(home, counts, args.requests, args.profile)
        if not args.skip_throughput:
            body_file = work / "body.json"
            body_file.write_text(json.dumps(
                {"inputs": [dict(zip(COLUMNS, probe_row(), strict=True))]}))
            throughput(home, args.phase, args.rounds, body_file,
                       tuple(p for p in args.poll.split(",") if p))
    print(f"\ntotal {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
