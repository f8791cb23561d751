"""Serving benchmark: modelhost against MLflow, BentoML, a bare ASGI app and in-process predict.

Run from the repository root with modelhost's virtualenv (see README.md in this folder):

    .venv/bin/python benchmarks/serving/run.py            # full run, writes RESULTS.md
    .venv/bin/python benchmarks/serving/run.py --smoke    # 1 s per load level, a quick check

One run, one machine, loopback only. The script

1. trains a LogisticRegression and a 100-tree RandomForestClassifier (n_jobs=1) on 20
   numeric features (``make_classification``, fixed seeds; see common.py) and measures
   in-process predict throughput on 1, 64 and 1,024 rows (the floor no server can beat);
2. registers both models in a temporary MODELHOST_HOME (staging, then production), saves
   them with ``mlflow.sklearn.save_model`` (in .venvs/mlflow) and in a BentoML model store
   (in .venvs/bentoml), and checks that every environment trained the same models;
   When ``register`` has an ``optimize`` parameter, both are also registered with
   ``optimize=True`` (ONNX when it agrees and is faster) and served as well;
3. starts each server in turn (modelhost 1 and 2 workers, ``mlflow models serve`` default
   and 2 workers, BentoML 1 and 2 workers with and without adaptive batching, and a bare
   uvloop+httptools ASGI app returning a constant with 1 and 2 workers), checks its answer
   to one row once, then loads it with wrk at 1, 8 and 64 connections (a warm-up run, then
   the measured run), checks the answer again and stops it;
4. prints Markdown tables (requests/s, p50, p99, errors, ratios to modelhost, targets)
   and writes them to RESULTS.md (``--output``), with the command, date and machine.

Every server and wrk run is bounded in time, and every process started is stopped at the
end (also on errors and Ctrl-C). Logs and raw numbers go to benchmarks/serving/work/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import http.client
import importlib.metadata
import inspect
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    COLUMNS,
    MODEL_TITLES,
    MODELS,
    fingerprint,
    frame,
    make_data,
    probe_row,
    train,
)

VENVS = HERE / ".venvs"
WORK = HERE / "work"
MAIN_BIN = ROOT / ".venv" / "bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

# What to pip install into each competitor's virtualenv (``--setup`` runs it).
VENV_PACKAGES = {"mlflow": ["mlflow>=3,<4", "scikit-learn"],
                 "bentoml": ["bentoml==1.4.*", "scikit-learn", "pandas"]}

# The targets of issue 3 (Performance), at 64 connections unless stated.
TARGETS = {
    "lr": {"vs_mlflow": 8.0, "vs_bentoml": 8.0, "vs_const": 0.40, "p99_ms": 50.0},
    "rf": {"vs_mlflow": 20.0, "vs_bentoml_batch": 5.0, "p99_ms": 100.0},
    "c1_p50_ms": 1.5,
}


def source_digest() -> str:
    """A short hash of modelhost's installed source (the files a server imports), to tell
    when the code changed while the benchmark ran."""
    import hashlib

    import modelhost

    digest = hashlib.sha256()
    package = Path(modelhost.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# CPU accounting: how busy the machine, the server's process tree and wrk were


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime ticks, starttime) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def process_tree(root: int) -> dict[int, int]:
    """pid -> starttime of ``root`` and all its descendants (by parent links, so the
    workers BentoML's supervisor starts in their own sessions are included)."""
    parents: dict[int, int] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
                starts[int(entry)] = stat[2]
    tree = {root: starts.get(root, 0)} if root in starts else {}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree[pid] = starts[pid]
                changed = True
    return tree


def tree_cpu_seconds(pids: dict[int, int]) -> float:
    return sum(cpu_by_pid(pids).values())


def cpu_by_pid(pids: dict[int, int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each live process of ``pids``."""
    out: dict[int, float] = {}
    for pid, start in pids.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == start:
            out[pid] = stat[1] / CLK_TCK
    return out


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, irq) CPU seconds of the whole machine since boot, from /proc/stat: busy is
    user+nice+system+steal time, irq the hard and soft interrupt time (on loopback, mostly
    the kernel moving the benchmark's own packets, which no process is charged for)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + steal) / CLK_TCK, (irq + softirq) / CLK_TCK


class QuietGate:
    """Before each measured run, wait (bounded) until the rest of the machine is quiet.

    Other sessions share this machine; a run that starts while they use a core measures
    them as much as the server. Each check samples one second; the wait per run and the
    total wait of the benchmark are capped, so the benchmark always finishes.
    """

    def __init__(self, threshold_cores: float, max_wait_s: float, budget_s: float) -> None:
        self.threshold = threshold_cores
        self.max_wait = max_wait_s
        self.budget = budget_s
        self.total_waited = 0.0
        self.busy_starts = 0

    def wait(self, tree: dict[int, int]) -> tuple[float, float]:
        """(seconds waited, other cores in the last sample)."""
        waited = 0.0
        while True:
            busy0, _ = machine_busy_seconds()
            server0 = tree_cpu_seconds(tree)
            start = time.monotonic()
            time.sleep(1.0)
            wall = time.monotonic() - start
            busy1, _ = machine_busy_seconds()
            other = max(0.0, (busy1 - busy0) - (tree_cpu_seconds(tree) - server0)) / wall
            if other <= self.threshold:
                return waited, other
            if waited >= self.max_wait or self.total_waited >= self.budget:
                self.busy_starts += 1
                return waited, other
            waited += wall
            self.total_waited += wall


# --------------------------------------------------------------------------------------
# Servers


@dataclass
class ServerConfig:
    key: str          # unique id, e.g. "lr/modelhost-w2"
    family: str       # modelhost | mlflow | bentoml | const
    label: str        # shown in the tables
    model: str | None  # lr | rf | None (the constant app)
    argv: list[str]
    env: dict[str, str]
    path: str         # the POST route
    body: bytes
    answer: Callable[[Any], Any]  # the decoded JSON answer -> the predicted class
    expected: Any     # the class predicted in-process (None: any JSON answer)
    port: int = 0
    cwd: str = str(HERE)


class StartError(RuntimeError):
    pass


class Server:
    """One server process tree: start, wait for a correct answer, stop (always)."""

    def __init__(self, config: ServerConfig, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.tree: dict[int, int] = {}

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.config.argv, env=self.config.env,
                                         cwd=self.config.cwd, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout_s: float) -> tuple[float, Any]:
        """Poll with the benchmark's own request until the answer is 200 and right."""
        assert self.proc is not None
        started = time.monotonic()
        last = "no answer"
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise StartError(f"exited with code {self.proc.returncode} before answering; "
                                 f"last log lines:\n{self.log_tail()}")
            try:
                status, body = post(self.config.port, self.config.path, self.config.body)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    value = self.check_answer(body)
                    self.tree = process_tree(self.proc.pid)
                    return time.monotonic() - started, value
                last = f"HTTP {status}: {body[:300]!r}"
            time.sleep(0.25)
        raise StartError(f"no correct answer within {timeout_s:.0f} s (last: {last}); "
                         f"last log lines:\n{self.log_tail()}")

    def check_answer(self, body: bytes) -> Any:
        try:
            value = self.config.answer(json.loads(body))
        except Exception as exc:
            raise StartError(f"unexpected answer {body[:300]!r}: {exc!r}") from None
        expected = self.config.expected
        if expected is not None and value != expected:
            raise StartError(f"answered {value!r} where in-process predict gives {expected!r}"
                             f" (body {body[:300]!r})")
        return value

    def stop(self, grace_s: float = 20.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        tree = {**self.tree, **process_tree(proc.pid)}
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        for pid, start in tree.items():  # workers in their own sessions (BentoML)
            if pid != proc.pid and _alive(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            code = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in tree.items()):
            time.sleep(0.1)
        for pid, start in tree.items():
            if _alive(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=5)
        self.proc = None
        return code


def _alive(pid: int, start: int) -> bool:
    stat = _proc_stat(pid)
    if stat is None:
        return False
    try:  # a zombie has exited; it only waits for its parent
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return stat[2] == start and state != "Z"


def post(port: int, path: str, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# wrk


@dataclass
class LoadResult:
    config: str
    family: str
    label: str
    model: str | None
    connections: int
    threads: int
    duration_s: float
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    server_cores: float = 0.0   # CPU seconds of the server's processes / wall seconds
    wrk_cores: float = 0.0
    irq_cores: float = 0.0      # interrupt time (mostly loopback networking)
    other_cores: float = 0.0    # the rest of the machine (other sessions, this script)
    process_cores: list[float] = field(default_factory=list)  # per server process, busiest 1st
    quiet_wait_s: float = 0.0   # how long the run waited for the machine to be quiet
    other_before: float = 0.0   # other cores just before the run started
    loadavg: str = ""
    failed: str = ""            # why there is no measurement

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


_WRK_JSON = re.compile(r"^BENCH_JSON (\{.*\})$", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_argv(url: str, connections: int, duration_s: int) -> list[str]:
    threads = min(2, connections)  # wrk needs at least one connection per thread
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s",
            "--latency", "-s", str(HERE / "post.lua"), url]


def run_wrk(server: Server, body_file: Path, connections: int, duration_s: int,
            warmup_s: int, gate: QuietGate | None) -> LoadResult:
    config = server.config
    url = f"http://{HOST}:{config.port}{config.path}"
    env = {**os.environ, "WRK_BODY_FILE": str(body_file)}
    result = LoadResult(config.key, config.family, config.label, config.model, connections,
                        min(2, connections), duration_s)
    tree = process_tree(server.proc.pid) if server.proc else {}
    if gate is not None:
        result.quiet_wait_s, result.other_before = gate.wait(tree)
    if warmup_s > 0:
        subprocess.run(wrk_argv(url, connections, warmup_s), env=env, capture_output=True,
                       timeout=warmup_s + 60, check=False)
    result.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    busy0, irq0 = machine_busy_seconds()
    per_pid0 = cpu_by_pid(tree)
    server0 = sum(per_pid0.values())
    wall0 = time.monotonic()
    with open(WORK / "wrk.out", "w+b") as out:
        proc = subprocess.Popen(wrk_argv(url, connections, duration_s), env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + duration_s + 60
        while True:  # os.wait4 gives wrk's own CPU time; poll it so we never hang
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                result.failed = "wrk did not finish in time"
                break
            time.sleep(0.05)
        out.seek(0)
        text = out.read().decode(errors="replace")
    with open(WORK / "wrk.log", "a") as all_output:
        all_output.write(f"### {config.key} c={connections}\n{text}\n")
    wall = time.monotonic() - wall0
    busy1, irq1 = machine_busy_seconds()
    per_pid1 = cpu_by_pid(tree)
    server_cpu = sum(per_pid1.values()) - server0
    result.process_cores = sorted(
        (round((v - per_pid0.get(pid, v)) / wall, 2) for pid, v in per_pid1.items()
         if (v - per_pid0.get(pid, v)) / wall >= 0.01), reverse=True)
    wrk_cpu = usage.ru_utime + usage.ru_stime
    result.server_cores = server_cpu / wall
    result.wrk_cores = wrk_cpu / wall
    result.irq_cores = (irq1 - irq0) / wall
    result.other_cores = max(0.0, (busy1 - busy0) - server_cpu - wrk_cpu) / wall
    match = _WRK_JSON.search(text)
    if match is None:
        result.failed = result.failed or f"wrk output not understood: {text[-500:]!r}"
        return result
    data = json.loads(match.group(1))
    result.requests = data["requests"]
    result.rps = data["requests"] / (data["duration_us"] / 1e6)
    result.p50_ms = data["p50_us"] / 1000
    result.p90_ms = data["p90_us"] / 1000
    result.p99_ms = data["p99_us"] / 1000
    result.max_ms = data["max_us"] / 1000
    non2xx = _NON_2XX.search(text)
    result.non_2xx = max(int(non2xx.group(1)) if non2xx else 0, data["status_errors"])
    sock = _SOCKET.search(text)
    counts = ([int(v) for v in sock.groups()] if sock else
              [data["connect_errors"], data["read_errors"], data["write_errors"],
               data["timeouts"]])
    result.socket_errors = {k: v for k, v in zip(("connect", "read", "write", "timeout"),
                                                 counts, strict=True) if v}
    if result.requests == 0:
        result.failed = "no request completed"
    return result


# --------------------------------------------------------------------------------------
# Preparing the models in every environment


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def setup_venvs(names: list[str]) -> None:
    for name in names:
        if venv_python(name).exists():
            continue
        log(f"creating {VENVS / name} (pip install {' '.join(VENV_PACKAGES[name])})")
        subprocess.run(["python3", "-m", "venv", str(VENVS / name)], check=True)
        subprocess.run([str(venv_python(name)), "-m", "pip", "install", "-q",
                        *VENV_PACKAGES[name]], check=True)


def competitor_env(name: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a command run as if ``name``'s virtualenv were activated
    (``mlflow models serve`` execs ``uvicorn`` from PATH)."""
    env = clean_env()
    env["VIRTUAL_ENV"] = str(VENVS / name)
    env["PATH"] = f"{VENVS / name / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update({"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                "BENTOML_DO_NOT_TRACK": "true", "PYTHONWARNINGS": "ignore"})
    env.update(extra)
    return env


def clean_env() -> dict[str, str]:
    drop = ("MODELHOST_", "PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "PYTHONPATH",
            "MLFLOW_", "BENTOML_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class Prepared:
    home: Path
    mlflow_dir: Path
    bento_home: Path
    expected: dict[str, int]
    versions: dict[str, str]
    modelhost_names: dict[str, str]      # lr -> registered name
    optimized_names: dict[str, str]      # lr -> name registered with optimize (if any)
    notes: list[str]


def prepare(tmp: Path, families: set[str], optimize: str) -> Prepared:
    import sklearn

    import modelhost

    X, y, X_test, _ = make_data()
    row = frame([probe_row()])
    models = {kind: train(kind, X, y) for kind in MODELS}
    prints = {kind: fingerprint(m, X_test) for kind, m in models.items()}
    expected = {kind: int(m.predict(row)[0]) for kind, m in models.items()}  # type: ignore[attr-defined]
    versions = {"modelhost": importlib.metadata.version("modelhost"),
                "scikit-learn (modelhost venv)": sklearn.__version__}
    notes: list[str] = []
    home = tmp / "modelhost-home"
    names = {kind: f"bench-{kind}" for kind in MODELS}
    optimized: dict[str, str] = {}
    if "modelhost" in families:
        client = modelhost.Client(modelhost.Settings(home=home))
        try:
            register = client.registry.register
            can_optimize = "optimize" in inspect.signature(register).parameters
            for kind, model in models.items():
                mv = register(model, name=names[kind], input_example=frame(X[:5]))
                client.transition_stage(names[kind], mv.version, "staging")
                client.transition_stage(names[kind], mv.version, "production")
                log(f"modelhost: registered {names[kind]} {mv.version} -> production")
                if optimize == "off":
                    continue
                if not can_optimize:
                    if kind == MODELS[0]:
                        notes.append("`Registry.register` has no `optimize` parameter yet, so "
                                     "the ONNX-optimized modelhost configuration was skipped "
                                     "(in-process ONNX Runtime numbers are below).")
                    continue
                name = f"bench-{kind}-opt"
                try:
                    mv = register(model, name=name, input_example=frame(X[:5]),
                                  optimize=True)
                    client.transition_stage(name, mv.version, "staging")
                    client.transition_stage(name, mv.version, "production")
                    optimized[kind] = name
                    report = (getattr(mv, "flavor_meta", None) or {}).get("optimize")
                    log(f"modelhost: registered {name} {mv.version} with optimize=True "
                        f"(flavor {getattr(mv, 'flavor', '?')})")
                    notes.append(f"`register(..., optimize=True)` for {MODEL_TITLES[kind]} "
                                 f"chose flavor `{getattr(mv, 'flavor', '?')}`; its report: "
                                 f"`{json.dumps(report, default=str)[:600]}`")
                except Exception as exc:  # report it; the benchmark goes on
                    notes.append(f"register(..., optimize=True) failed for {kind}: "
                                 f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
    mlflow_dir = tmp / "mlflow-models"
    if "mlflow" in families:
        report = run_saver("mlflow", ["save_mlflow.py", str(mlflow_dir)], {})
        versions["mlflow"] = report["mlflow"]
        check_prints("mlflow", report, prints)
    bento_home = tmp / "bentoml-home"
    if "bentoml" in families:
        report = run_saver("bentoml", ["save_bento.py"], {"BENTOML_HOME": str(bento_home)})
        versions["bentoml"] = report["bentoml"]
        check_prints("bentoml", report, prints)
    return Prepared(home, mlflow_dir, bento_home, expected, versions, names, optimized, notes)


def run_saver(venv: str, args: list[str], extra: dict[str, str]) -> dict[str, Any]:
    log(f"{venv}: training and saving the models ({args[0]})")
    proc = subprocess.run([str(venv_python(venv)), *args], cwd=HERE,
                          env=competitor_env(venv, extra), capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_prints(venv: str, report: dict[str, Any], prints: dict[str, str]) -> None:
    for kind, value in prints.items():
        if report[kind] != value:
            raise SystemExit(f"the {venv} environment trained a different {kind} model "
                             f"(predictions hash {report[kind]} != {value}); are the "
                             f"scikit-learn versions the same? ({report.get('sklearn')})")


# --------------------------------------------------------------------------------------
# Server configurations


def server_configs(prep: Prepared, families: set[str], models: list[str],
                   modelhost_env: dict[str, str] | None = None) -> list[ServerConfig]:
    row = probe_row()
    record = dict(zip(COLUMNS, row, strict=True))
    v1_body = json.dumps({"inputs": [record]}).encode()
    mlflow_body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [row]}}).encode()
    bento_body = json.dumps({"data": [row]}).encode()
    configs: list[ServerConfig] = []
    for kind in models:
        expected = prep.expected[kind]
        if "modelhost" in families:
            variants = [("", prep.modelhost_names[kind])]
            if kind in prep.optimized_names:
                variants.append((" optimize=ONNX", prep.optimized_names[kind]))
            for suffix, name in variants:
                for workers in (1, 2):
                    env = clean_env()
                    env.update(modelhost_env or {})
                    env["MODELHOST_HOME"] = str(prep.home)
                    if workers > 1:  # what `serve` would create itself, but inside our
                        # temporary folder so that the run leaves nothing in /tmp
                        metrics_dir = prep.home.parent / f"metrics-{kind}-{len(configs)}"
                        metrics_dir.mkdir()
                        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
                    tag = "-opt" if suffix else ""
                    configs.append(ServerConfig(
                        key=f"{kind}/modelhost{tag}-w{workers}",
                        family="modelhost-opt" if suffix else "modelhost",
                        label=f"modelhost{suffix}, {workers} worker{'s' * (workers > 1)}",
                        model=kind,
                        argv=[str(MAIN_BIN / "modelhost"), "serve", "--host", HOST,
                              "--port", "{port}", "--workers", str(workers)],
                        env=env, path=f"/v1/models/{name}/predict", body=v1_body,
                        answer=lambda doc: doc["predictions"][0], expected=expected))
        if "mlflow" in families:
            for workers in (None, 2):
                argv = [str(VENVS / "mlflow" / "bin" / "mlflow"), "models", "serve", "-m",
                        str(prep.mlflow_dir / kind), "--env-manager", "local", "-h", HOST,
                        "-p", "{port}"]
                if workers:
                    argv += ["--workers", str(workers)]
                configs.append(ServerConfig(
                    key=f"{kind}/mlflow-w{workers or 1}", family="mlflow",
                    label=("MLflow, default (1 worker)" if workers is None
                           else f"MLflow, --workers {workers}"),
                    model=kind, argv=argv, env=competitor_env("mlflow", {}),
                    path="/invocations", body=mlflow_body,
                    answer=lambda doc: doc["predictions"][0], expected=expected))
        if "bentoml" in families:
            for batchable in (False, True):
                for workers in (1, 2):
                    env = competitor_env("bentoml", {
                        "BENTOML_HOME": str(prep.bento_home),
                        "BENCH_BENTO_MODEL": f"bench-{kind}:latest",
                        "BENCH_BENTO_BATCHABLE": "1" if batchable else "0",
                        "BENCH_BENTO_WORKERS": str(workers), "BENCH_BENTO_MAX_BATCH": "64"})
                    configs.append(ServerConfig(
                        key=f"{kind}/bentoml{'-batch' if batchable else ''}-w{workers}",
                        family="bentoml-batch" if batchable else "bentoml",
                        label=(f"BentoML, {'batching' if batchable else 'no batching'}, "
                               f"{workers} worker{'s' * (workers > 1)}"),
                        model=kind,
                        argv=[str(VENVS / "bentoml" / "bin" / "bentoml"), "serve",
                              "bento_service:Classifier", "--working-dir", str(HERE),
                              "--host", HOST, "--port", "{port}"],
                        env=env, path="/predict", body=bento_body,
                        answer=lambda doc: doc[0], expected=expected))
    if "const" in families:
        for workers in (1, 2):
            configs.append(ServerConfig(
                key=f"const-w{workers}", family="const",
                label=f"bare ASGI constant, {workers} worker{'s' * (workers > 1)}",
                model=None,
                argv=[str(MAIN_BIN / "python"), "-m", "uvicorn", "const_app:app",
                      "--app-dir", str(HERE), "--host", HOST, "--port", "{port}",
                      "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                      "--no-access-log", "--log-level", "warning"],
                env=clean_env(), path="/predict", body=v1_body,
                answer=lambda doc: doc["predictions"][0], expected=None))
    return configs


# --------------------------------------------------------------------------------------
# In-process predict


@dataclass
class InProcess:
    model: str
    batch: int
    rows_per_s: dict[str, float]


def best_rate(call: Callable[[], Any], rows: int, seconds: float) -> float:
    """Rows per second: the best of 3 runs, each repeating ``call`` for ``seconds``."""
    call()
    best = 0.0
    for _ in range(3):
        gc.collect()
        n = 0
        start = time.perf_counter()
        while True:
            call()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, n * rows / elapsed)
    return best


def in_process(models: list[str], seconds: float) -> tuple[list[InProcess], list[str]]:
    import numpy as np

    X, y, X_test, _ = make_data()
    rng = np.random.default_rng(0)
    out: list[InProcess] = []
    notes: list[str] = []
    try:
        import onnxruntime as ort

        from modelhost.flavors.onnx import convert_sklearn
    except ImportError as exc:
        ort = None
        notes.append(f"ONNX Runtime numbers skipped: {exc}")
    for kind in models:
        model: Any = train(kind, X, y)
        session = None
        if ort is not None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            proto = convert_sklearn(model, frame(X[:5]))
            session = ort.InferenceSession(proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            outputs = session.run(None, {"X": X_test.astype(np.float32)})
            agree = float(np.mean(np.asarray(outputs[0]) == model.predict(frame(X_test))))
            diff = float(np.max(np.abs(np.asarray(outputs[1]) -
                                       model.predict_proba(frame(X_test)))))
            notes.append(f"ONNX ({MODEL_TITLES[kind]}): labels agree with scikit-learn on "
                         f"{agree:.2%} of the 1,024 test rows; largest probability "
                         f"difference {diff:.2e} (float32 graph).")
        for batch in (1, 64, 1024):
            idx = rng.integers(0, len(X_test), size=batch)
            array = X_test[idx]
            df = frame(array)
            as32 = array.astype(np.float32)
            rates: dict[str, float] = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fitted with names, called with an ndarray
                rates["predict, ndarray"] = best_rate(lambda: model.predict(array), batch,
                                                      seconds)
            rates["predict, DataFrame"] = best_rate(lambda: model.predict(df), batch, seconds)
            rates["predict + predict_proba, DataFrame"] = best_rate(
                lambda: (model.predict(df), model.predict_proba(df)), batch, seconds)
            if session is not None:
                rates["ONNX Runtime (labels + probabilities)"] = best_rate(
                    lambda: session.run(None, {"X": as32}), batch, seconds)
            out.append(InProcess(kind, batch, rates))
            log(f"in-process {kind} batch {batch}: "
                + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in rates.items()))
    return out, notes


# --------------------------------------------------------------------------------------
# Report


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def best(results: list[LoadResult], family: str, model: str | None, c: int
         ) -> LoadResult | None:
    pool = [r for r in results if r.family == family and r.connections == c
            and (model is None or r.model == model) and not r.failed]
    return max(pool, key=lambda r: r.rps, default=None)


def ratio(a: LoadResult | None, b: LoadResult | None) -> float | None:
    if a is None or b is None or b.rps == 0:
        return None
    return a.rps / b.rps


def error_text(r: LoadResult) -> str:
    if r.failed:
        return f"FAILED: {r.failed}"
    if not r.errors:
        return "0"
    parts = ([f"{r.non_2xx} non-2xx"] if r.non_2xx else []) + [
        f"{v} {k}" for k, v in r.socket_errors.items()]
    return f"**{r.errors}** ({', '.join(parts)})"


def server_cpu_text(r: LoadResult) -> str:
    """Total cores of the server's processes, and per process when several worked."""
    text = f"{r.server_cores:.2f}"
    if len(r.process_cores) > 1:
        text += " (" + " + ".join(f"{c:.2f}" for c in r.process_cores[:4]) + ")"
    return text


def model_table(results: list[LoadResult], model: str, levels: list[int]) -> list[str]:
    lines = ["| server / configuration | conns | req/s | p50 ms | p99 ms | errors | "
             "best modelhost ÷ this | server CPU (cores) | other CPU (cores) |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    rows = [r for r in results if r.model == model or r.model is None]
    keys: list[str] = []
    for r in rows:
        if r.config not in keys:
            keys.append(r.config)
    for key in keys:
        for c in levels:
            r = next((x for x in rows if x.config == key and x.connections == c), None)
            if r is None:
                continue
            top = best(results, "modelhost", model, c)
            if r.failed and not r.requests:
                lines.append(f"| {r.label} | {c} | - | - | - | {error_text(r)} | - | - | - |")
                continue
            lines.append(
                f"| {r.label} | {c} | {fmt_rps(r.rps)} | {fmt_ms(r.p50_ms)} | "
                f"{fmt_ms(r.p99_ms)} | {error_text(r)} | {fmt_ratio(ratio(top, r))} | "
                f"{server_cpu_text(r)} | {r.other_cores:.2f} |")
    return lines


MH_SHORT = {"modelhost-w1": "w1", "modelhost-w2": "w2", "modelhost-opt-w1": "opt-w1",
            "modelhost-opt-w2": "opt-w2"}


def targets_table(results: list[LoadResult], models: list[str]) -> list[str]:
    """One row per target; one column per modelhost configuration (w1/w2: default
    registration, 1 or 2 workers; opt-w1/opt-w2: registered with optimize=True)."""
    present = [k for k in MH_SHORT if any(r.config.endswith("/" + k) for r in results)]
    lines = ["| model | check (64 connections unless stated) | "
             + " | ".join(present) + " | target | met by |",
             "|---|---|" + "---:|" * len(present) + "---:|---|"]

    def mh(model: str, key: str, c: int) -> LoadResult | None:
        return next((r for r in results if r.config == f"{model}/{key}"
                     and r.connections == c and not r.failed), None)

    def row(model: str, check: str, values: list[float | None], target: str,
            ok: Callable[[float], bool] | None, fmt: Callable[[float | None], str],
            need_all: tuple[str, ...] = ()) -> None:
        if ok is None:
            met = "-"
        elif all(v is None for v in values):
            met = "n/a"
        else:
            passing = [MH_SHORT[k] for k, v in zip(present, values, strict=True)
                       if v is not None and ok(v)]
            missing = [MH_SHORT[k] for k in need_all if MH_SHORT[k] not in passing]
            if need_all:
                met = "**no** (" + ", ".join(missing) + ")" if missing else "both w1 and w2"
            else:
                met = ", ".join(passing) if passing else "**no**"
        cells = " | ".join(fmt(v) for v in values)
        lines.append(f"| {MODEL_TITLES[model].split(' ')[0]} | {check} | {cells} | {target} "
                     f"| {met} |")

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{fmt_ms(value)} ms"

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    for model in models:
        t = TARGETS[model]
        mh64 = [mh(model, k, 64) for k in present]
        mlflow = best(results, "mlflow", model, 64)
        bento = max((b for b in (best(results, "bentoml", model, 64),
                                 best(results, "bentoml-batch", model, 64)) if b),
                    key=lambda r: r.rps, default=None)
        batch = best(results, "bentoml-batch", model, 64)
        const = best(results, "const", None, 64)

        def name(r: LoadResult | None) -> str:
            return f"{r.label}, {fmt_rps(r.rps)} req/s" if r else "none"

        row(model, f"÷ best MLflow ({name(mlflow)})", [ratio(m, mlflow) for m in mh64],
            f">= {t['vs_mlflow']:g}x", lambda v, x=t["vs_mlflow"]: v >= x, fmt_ratio)
        if "vs_bentoml" in t:
            row(model, f"÷ best BentoML ({name(bento)})", [ratio(m, bento) for m in mh64],
                f">= {t['vs_bentoml']:g}x", lambda v, x=t["vs_bentoml"]: v >= x, fmt_ratio)
        if "vs_bentoml_batch" in t:
            row(model, f"÷ best BentoML with batching ({name(batch)})",
                [ratio(m, batch) for m in mh64], f">= {t['vs_bentoml_batch']:g}x",
                lambda v, x=t["vs_bentoml_batch"]: v >= x, fmt_ratio)
            if bento is not batch:
                row(model, f"(reference) ÷ best BentoML overall ({name(bento)})",
                    [ratio(m, bento) for m in mh64], "-", None, fmt_ratio)
        if "vs_const" in t:
            row(model, f"÷ best bare constant app ({name(const)})",
                [ratio(m, const) for m in mh64], f">= {t['vs_const']:.0%}",
                lambda v, x=t["vs_const"]: v >= x, pct)
        else:
            row(model, f"(reference) ÷ best bare constant app ({name(const)})",
                [ratio(m, const) for m in mh64], "-", None, pct)
        row(model, "p99 latency", [m.p99_ms if m else None for m in mh64],
            f"< {t['p99_ms']:g} ms", lambda v, x=t["p99_ms"]: v < x, ms)
        c1 = [mh(model, k, 1) for k in present]
        if model == "lr":
            row(model, "p50 at 1 connection", [m.p50_ms if m else None for m in c1],
                f"< {TARGETS['c1_p50_ms']:g} ms", lambda v: v < TARGETS["c1_p50_ms"], ms,
                need_all=("modelhost-w1", "modelhost-w2"))
        else:
            row(model, "(reference) p50 at 1 connection",
                [m.p50_ms if m else None for m in c1], "-", None, ms)
    return lines


def in_process_table(rows: list[InProcess]) -> list[str]:
    if not rows:
        return []
    kinds = list(rows[0].rows_per_s)
    lines = ["| model | rows per call | " + " | ".join(f"{k} (rows/s)" for k in kinds)
             + " | predict, ndarray (calls/s) |",
             "|---|---:|" + "---:|" * (len(kinds) + 1)]
    for r in rows:
        cells = " | ".join(fmt_rps(r.rows_per_s.get(k, 0)) for k in kinds)
        lines.append(f"| {MODEL_TITLES[r.model].split(' ')[0]} | {r.batch:,} | {cells} | "
                     f"{fmt_rps(r.rows_per_s['predict, ndarray'] / r.batch)} |")
    return lines


def imbalance_notes(results: list[LoadResult]) -> list[str]:
    """Multi-worker runs where one worker process did nearly all the work: wrk opens its
    connections at once, and with a shared listening socket one worker may accept them
    all. Such a configuration's throughput can vary about 2x from run to run."""
    notes = []
    for r in results:
        two = "2 workers" in r.label or "--workers 2" in r.label
        cores = r.process_cores
        if (two and not r.failed and r.connections >= 8 and cores and cores[0] >= 0.7
                and (len(cores) < 2 or cores[1] < 0.2 * cores[0])):
            shown = ", ".join(f"{c:.2f}" for c in cores[:3])
            notes.append(f"- {r.label} ({r.model or 'constant'}), {r.connections} connections: "
                         f"one process did nearly all the work (cores per process: {shown}); "
                         "wrk's connections were accepted by one worker, so this run "
                         "measured one worker (expect up to ~2x between runs).")
    return notes


def machine_info() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True,
                                 check=False).stdout.strip().splitlines()
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return [f"{os.cpu_count()} CPUs ({cpu}){mem}, Linux {platform.release()}, "
            f"Python {platform.python_version()}",
            f"load generator: {wrk_version[0] if wrk_version else 'wrk'}"]


def render(args: argparse.Namespace, results: list[LoadResult], inproc: list[InProcess],
           prep_versions: dict[str, str], notes: list[str], problems: list[str],
           started: dt.datetime, elapsed_s: float, loads: tuple[str, str],
           models: list[str], levels: list[int], gate: QuietGate | None) -> str:
    out: list[str] = []
    out.append("# Serving benchmark: modelhost, MLflow, BentoML, a bare ASGI app, in-process")
    out.append("")
    out.append(f"Command (from the repository root): `{args.command}`")
    out.append("")
    out.append(f"Date: {started:%Y-%m-%d %H:%M} UTC; wall time {elapsed_s / 60:.1f} min."
               + (" **SMOKE RUN** (1 s per level): not a measurement." if args.smoke else ""))
    out.append("")
    out.append("Machine: " + "; ".join(machine_info()) + ".")
    versions = dict(prep_versions)
    for pkg in ("uvicorn", "uvloop", "httptools", "fastapi", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[pkg] = importlib.metadata.version(pkg)
    out.append("")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    out.append("")
    out.append(f"Load: wrk, {args.warmup} s warm-up then {args.duration} s measured per level, "
               f"2 threads (1 at 1 connection), one 20-feature row per POST in each server's "
               f"native format; latencies are wrk's (`--latency`), measured closed-loop.")
    out.append("")
    others = [r.other_cores for r in results if not r.failed]
    noisy = sum(1 for v in others if v > 0.3)
    gate_text = ("" if gate is None else
                 f" Before each run the script waited (at most {gate.max_wait:g} s per run, "
                 f"{gate.budget:g} s in all) until other processes used at most "
                 f"{gate.threshold:g} cores: it waited {gate.total_waited:.0f} s in total, and "
                 f"{gate.busy_starts} run(s) had to start on a busier machine.")
    out.append(
        "Noise: this 2-core machine is shared. wrk and the server share the same 2 cores, "
        "so every number includes the load generator's own CPU use (shown as wrk's CPU in "
        "the raw data). Other processes (other sessions, editors, test suites) used a "
        f"median of {statistics.median(others) if others else 0:.2f} and at most "
        f"{max(others) if others else 0:.2f} cores during the measured runs (column \"other "
        f"CPU\": machine CPU time minus the server's and wrk's, interrupt time excluded); "
        f"{noisy} of {len(others)} runs had more than 0.3 cores of such background load. "
        f"Load average {loads[0]} at the start, {loads[1]} at the end." + gate_text +
        " Treat differences under ~10-15% between configurations, and any run with high "
        "\"other CPU\", as noise; the raw numbers are in `benchmarks/serving/work/"
        "results.json` after a run.")
    out.append("")
    for model in models:
        out.append(f"## {MODEL_TITLES[model]}")
        out.append("")
        out.extend(model_table(results, model, levels))
        out.append("")
    out.append("## Targets (issue 3)")
    out.append("")
    out.extend(targets_table(results, models))
    out.append("")
    c1 = [r for r in results if r.family.startswith("modelhost") and r.connections == 1
          and not r.failed]
    if c1:
        out.append("c=1 p50 for modelhost (target < 1.5 ms; ~40 ms with 2 workers would mean "
                   "TCP_NODELAY was lost): "
                   + "; ".join(f"{MODEL_TITLES[r.model].split(' ')[0]} {r.label}: "
                               f"{fmt_ms(r.p50_ms)} ms" for r in c1 if r.model) + ".")
        out.append("")
    out.append("## In-process predict (the floor no server can beat)")
    out.append("")
    out.append("One process, one thread, the same fitted models; rows drawn from the test set; "
               "best of 3 runs of repeated calls. ONNX Runtime runs the skl2onnx graph "
               "(`modelhost.flavors.onnx.convert_sklearn`) with 1 intra-op thread.")
    out.append("")
    out.extend(in_process_table(inproc))
    out.append("")
    out.append("## Errors and notes")
    out.append("")
    bad = [r for r in results if r.errors or r.failed]
    if not bad and not problems:
        out.append("- No non-2xx responses, socket errors or server failures in any run.")
    for r in bad:
        out.append(f"- {r.label} ({r.model or 'constant'}), {r.connections} connections: "
                   f"{error_text(r)}")
    for p in problems:
        out.append(f"- {p}")
    out.extend(imbalance_notes(results))
    for n in notes:
        out.append(f"- {n}")
    out.append("- Each server's answer to the benchmark row was checked before and after its "
               "load (HTTP 200 and the class that in-process predict gives).")
    out.append("- modelhost's answer carries the class probabilities as well as the class "
               "(so it computes both); MLflow and the BentoML service answer the class only. "
               "modelhost runs with its defaults (adaptive batching up to 64 rows, max wait "
               "2 ms, no prediction cache, no access log); MLflow and BentoML with theirs "
               "(both log every request). BentoML batching uses `max_batch_size=64`.")
    out.append("- \"server CPU\" is the CPU time of all the server's processes divided by "
               "the run's wall time (in parentheses: per process, busiest first, when "
               "several did work); 2 cores is the whole machine, wrk's share included.")
    out.append("- \"best modelhost ÷ this\" divides the requests/s of the best modelhost "
               "configuration with a default registration (w1 or w2; not `optimize`), same "
               "model and connections, by the row's. In the targets table, w1/w2 are "
               "modelhost with 1/2 workers, opt-w1/opt-w2 the same with the version "
               "registered with `optimize=True` (served as ONNX when that is faster).")
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="1 s warm-up and 1 s per level; writes work/RESULTS-smoke.md")
    parser.add_argument("--duration", type=int, default=None, help="seconds per level (10)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up seconds (2)")
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--models", default="lr,rf")
    parser.add_argument("--only", default="modelhost,mlflow,bentoml,const",
                        help="server families to run (comma-separated)")
    parser.add_argument("--optimize", choices=["auto", "off"], default="auto",
                        help="also serve versions registered with optimize=True (ONNX) when "
                             "the registry supports it")
    parser.add_argument("--inprocess-seconds", type=float, default=None)
    parser.add_argument("--quiet-threshold", type=float, default=0.3,
                        help="before each run, wait until other processes use at most this "
                             "many cores (0.3)")
    parser.add_argument("--quiet-wait", type=float, default=15,
                        help="longest wait for quiet before one run, seconds (15)")
    parser.add_argument("--quiet-budget", type=float, default=180,
                        help="longest total wait for quiet, seconds (180); 0 disables")
    parser.add_argument("--setup", action="store_true",
                        help="create the missing competitor virtualenvs first")
    parser.add_argument("--modelhost-env", action="append", default=[], metavar="KEY=VALUE",
                        help="set in the environment of the modelhost servers, e.g. "
                        "PYTHONPATH=/other/checkout/src to serve another tree, or "
                        "MODELHOST_PREDICTION_LOG=false (repeatable)")
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown output (default RESULTS.md, or work/RESULTS-smoke.md)")
    args = parser.parse_args()
    args.duration = args.duration or (1 if args.smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    in_seconds = args.inprocess_seconds or (0.05 if args.smoke else 0.3)
    output = args.output or (WORK / "RESULTS-smoke.md" if args.smoke else HERE / "RESULTS.md")
    args.command = shlex.join([os.path.relpath(sys.executable, ROOT)
                               if sys.executable.startswith(str(ROOT)) else sys.executable,
                               os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    families = {f.strip() for f in args.only.split(",") if f.strip()}
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    levels = [int(c) for c in args.connections.split(",")]

    if shutil.which("wrk") is None:
        print("wrk is not installed. Install it with:\n\n    apt-get install -y wrk\n\n"
              "(run `apt-get update` first if the package is not found)", file=sys.stderr)
        return 2
    needed = [f for f in ("mlflow", "bentoml") if f in families]
    if args.setup:
        setup_venvs(needed)
    missing = [f for f in needed if not venv_python(f).exists()]
    if missing:
        print("missing virtualenvs: " + ", ".join(str(VENVS / m) for m in missing)
              + "\ncreate them with `--setup`, or by hand:\n\n" + "\n".join(
                  f"    python3 -m venv {VENVS / m} && {VENVS / m}/bin/pip install "
                  + " ".join(shlex.quote(p) for p in VENV_PACKAGES[m]) for m in missing),
              file=sys.stderr)
        return 2

    WORK.mkdir(exist_ok=True)
    logs = WORK / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    (WORK / "wrk.log").unlink(missing_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))

    log("in-process predict")
    inproc, in_notes = in_process(models, in_seconds)
    results: list[LoadResult] = []
    problems: list[str] = []
    sources: dict[str, str] = {}  # modelhost config -> source digest when it started
    gate = (QuietGate(args.quiet_threshold, args.quiet_wait, args.quiet_budget)
            if args.quiet_budget > 0 else None)
    with tempfile.TemporaryDirectory(prefix="modelhost-serving-bench-") as tmp_name:
        tmp = Path(tmp_name)
        prep = prepare(tmp, families, args.optimize)
        modelhost_env = dict(item.split("=", 1) for item in args.modelhost_env)
        configs = server_configs(prep, families, models, modelhost_env)
        bodies: dict[bytes, Path] = {}
        for config in configs:
            if config.body not in bodies:
                bodies[config.body] = tmp / f"body-{len(bodies)}.json"
                bodies[config.body].write_bytes(config.body)
        log(f"{len(configs)} server configurations x {len(levels)} levels "
            f"({args.warmup}+{args.duration} s each)")
        for config in configs:
            config.port = free_port()
            config.argv = [a.replace("{port}", str(config.port)) for a in config.argv]
            server = Server(config, logs / f"{config.key.replace('/', '_')}.log")
            if config.family.startswith("modelhost"):
                sources[config.key] = source_digest()
            log(f"{config.key}: starting ({shlex.join(config.argv[:4])} ...)")
            try:
                server.start()
                took, value = server.wait_ready(timeout_s=180)
                log(f"{config.key}: ready after {took:.1f} s, answered {value!r}")
                for c in levels:
                    result = run_wrk(server, bodies[config.body], c, args.duration,
                                     args.warmup, gate)
                    results.append(result)
                    log(f"{config.key} c={c}: {result.rps:,.0f} req/s, p50 "
                        f"{result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors "
                        f"{result.errors}{' FAILED ' + result.failed if result.failed else ''}"
                        f" (server {result.server_cores:.2f} / wrk {result.wrk_cores:.2f} / "
                        f"irq {result.irq_cores:.2f} / other {result.other_cores:.2f} cores; "
                        f"waited {result.quiet_wait_s:.0f} s for quiet)")
                    if server.proc is not None and server.proc.poll() is not None:
                        raise StartError(f"exited with code {server.proc.returncode} under "
                                         f"load; last log lines:\n{server.log_tail()}")
                try:
                    status, body = post(config.port, config.path, config.body)
                    if status != 200:
                        raise StartError(f"HTTP {status} after the load: {body[:300]!r}")
                    server.check_answer(body)
                except OSError as exc:
                    raise StartError(f"no answer after the load: {exc}") from None
            except StartError as exc:
                problems.append(f"{config.label} ({config.model or 'constant'}): {exc}")
                log(f"{config.key}: PROBLEM {exc}")
                for c in levels:
                    if not any(r.config == config.key and r.connections == c
                               for r in results):
                        results.append(LoadResult(config.key, config.family, config.label,
                                                  config.model, c, min(2, c), args.duration,
                                                  failed=str(exc).splitlines()[0]))
            finally:
                code = server.stop()
                log(f"{config.key}: stopped (exit code {code})")
            problems.extend(scan_log(config, server.log_path))
            time.sleep(1)
    load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    elapsed = time.monotonic() - t0
    if len(set(sources.values())) > 1:
        problems.append(
            "modelhost's source changed while this benchmark ran (someone edited it), so "
            "the modelhost servers did not all run the same code; source hash per "
            "configuration: " + ", ".join(f"{k} {v}" for k, v in sources.items()))
    elif sources:
        prep.versions["modelhost source hash"] = next(iter(sources.values()))
    text = render(args, results, inproc, prep.versions, prep.notes + in_notes, problems,
                  started, elapsed, (load_start, load_end), models, levels, gate)
    (WORK / ("results-smoke.json" if args.smoke else "results.json")).write_text(json.dumps(
        {"command": args.command, "started": started.isoformat(),
         "results": [asdict(r) for r in results],
         "in_process": [asdict(r) for r in inproc], "problems": problems,
         "modelhost_sources": sources}, indent=1))
    output.write_text(text)
    print(text)
    log(f"wrote {output} ({elapsed / 60:.1f} min)")
    return 0


_LOG_PROBLEM = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception|Error:", re.I)
_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Disconnect|Exit|Interrupt)\w*)\b")


def scan_log(config: ServerConfig, path: Path) -> list[str]:
    """Error lines in a server's log: the exceptions raised, by type; for modelhost also
    the first excerpt, verbatim."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    hits = [i for i, line in enumerate(lines) if _LOG_PROBLEM.search(line)]
    if not hits:
        return []
    rel = os.path.relpath(path, ROOT)
    raised: dict[str, int] = {}
    for line in lines:
        match = _RAISED.match(line)
        if match:
            raised[match.group(1)] = raised.get(match.group(1), 0) + 1
    kinds = ", ".join(f"{n} x {k}" for k, n in sorted(raised.items(), key=lambda kv: -kv[1]))
    summary = (f"{config.label} ({config.model or 'constant'}): {len(hits)} error-looking "
               f"line(s) in its log `{rel}`" + (f"; exceptions raised: {kinds}" if kinds
                                                 else f", e.g. `{lines[hits[0]].strip()[:200]}`"))
    if set(raised) <= {"starlette.requests.ClientDisconnect", "ClientDisconnect"} and raised:
        summary += (" (requests still queued when wrk closed its connections at the end of "
                    "a run; not a server fault)")
    if not config.family.startswith("modelhost"):
        return [summary]
    first = hits[0]
    excerpt = "\n".join(lines[max(0, first - 2): first + 25])
    return [f"{summary}; the first:\n\n```\n{excerpt}\n```"]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        sys.exit(130)
