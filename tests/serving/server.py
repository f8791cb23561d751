"""A real ``modelhost serve`` process for end-to-end tests, and a model that is slow.

The server is started with the installed console script (``.venv/bin/modelhost``),
exactly as a user runs it, on a free loopback port. Its output goes to files (never a
pipe that could fill up and block it) so that a failure can show what it said.

This module is also imported *by the server* (``SlowModel`` is registered by import
path), so it imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODELHOST = Path(sys.executable).with_name("modelhost")
ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 45.0


class SlowModel:
    """Answers after two seconds: long enough to still be running during a shutdown."""

    seconds = 2.0

    def predict(self, X: Any) -> Any:
        import numpy as np

        time.sleep(self.seconds)
        return np.zeros(len(X), dtype=np.int64)


def free_port() -> int:
    """A free loopback port for a server to listen on, chosen at random below the
    kernel's ephemeral range. A port the kernel hands out itself (bind to port 0) comes
    from that range, the one the local ends of client connections come from too: a
    client of another test could take it before the server binds it (seen: "port ...
    is in use" while two servers started and were polled at once)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(min(20000, low // 2), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a server: ours without any MODELHOST_* or Prometheus setting
    that could leak in, plus the home, a fast reload and a private temp folder."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MODELHOST_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    tmp = home.parent / f"{home.name}-tmp"
    tmp.mkdir(exist_ok=True)
    env.update({
        "MODELHOST_HOME": str(home),
        "MODELHOST_RELOAD_INTERVAL_S": "0.5",
        # `serve --workers N` creates its metrics folder with mkdtemp: keep it in ours.
        "TMPDIR": str(tmp),
        # Models registered by import path (SlowModel) live in this repository.
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """One ``modelhost serve`` process (and, with ``--workers``, its children)."""

    args: list[str]
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    scheme: str = "http"  # "https" for a server given a certificate
    verify: Any = True  # what httpx verifies an https server with (a CA file)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        if self.starts > 1:  # a new port: the old one may linger in TIME_WAIT
            self.port = free_port()
        out = self.log_path("stdout").open("wb")
        err = self.log_path("stderr").open("wb")
        try:
            self.proc = subprocess.Popen(
                [str(MODELHOST), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "info", *self.args],
                env=self.env, cwd=self.log_dir, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL)
        finally:
            out.close()
            err.close()

    def log_path(self, stream: str) -> Path:
        return self.log_dir / f"server-{self.starts}.{stream}"

    def output(self, limit: int = 6000) -> str:
        text = ""
        for stream in ("stdout", "stderr"):
            path = self.log_path(stream)
            if path.exists():
                data = path.read_text(errors="replace")
                text += f"--- {stream} ---\n{data[-limit:]}\n"
        return text

    @property
    def workers(self) -> int:
        if "--workers" in self.args:
            return int(self.args[self.args.index("--workers") + 1])
        return 1

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll GET /readyz until it answers 200; fail with the server's output if the
        process exits or the deadline passes.

        Workers share one listening socket and each is ready on its own (each loads its
        models after it starts listening): with several, one 200 may come from a ready
        worker while the next connection lands on one still loading. So every poll is a
        new connection, and a run of consecutive 200s is needed (12 per worker)."""
        import httpx

        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        needed = 1 if self.workers == 1 else 12 * self.workers
        in_a_row = 0
        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection each time
        with httpx.Client(base_url=self.base_url, timeout=2.0, verify=self.verify,
                          limits=limits) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"the server exited with {self.proc.returncode} "
                                         f"before it was ready\n{self.output()}")
                try:
                    response = http.get("/readyz")
                except httpx.HTTPError as exc:
                    last = repr(exc)
                    in_a_row = 0
                else:
                    if response.status_code == 200:
                        in_a_row += 1
                        if in_a_row >= needed:
                            return
                        time.sleep(0.01)
                        continue
                    last = f"{response.status_code} {response.text}"
                    in_a_row = 0
                time.sleep(0.1)
        self.kill()
        raise AssertionError(f"the server was not ready after {timeout_s:.0f} s (last: "
                             f"{last})\n{self.output()}")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def ensure_running(self) -> None:
        if not self.running:  # not started yet, or a test stopped it: start a fresh one
            self.start()
        else:
            self.wait_ready()

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then wait (bounded) for the exit code; kill it if it hangs."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the server did not stop within {timeout_s:.0f} s of "
                                 f"SIGTERM\n{self.output()}") from None

    def kill(self) -> None:
        """Last resort: SIGKILL the process and any worker it left behind."""
        if self.proc is None:
            return
        children = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's workers), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (OSError, ValueError):
        return []
