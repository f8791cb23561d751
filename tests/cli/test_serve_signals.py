"""`modelhost serve` stops cleanly whenever a stop signal arrives.

A real server process (one worker, or two under uvicorn's supervisor) with a few small
production models gets SIGTERM at each phase of its start-up: as soon as it announces
itself (before it answers anything), while a model loads, just after `/readyz` turns 200,
and under load. Every time, the process and all its children are gone within a bound,
the exit status is 0, no process with its command line is left and the port is free;
under load, the requests in flight finish. A second Ctrl-C stops at once with status
130. A busy port or a bad host is refused before anything is printed or loaded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.cli.signal_models import marks
from tests.serving.server import MODELHOST, free_port, server_env

from modelhost import Client, Settings

pytestmark = pytest.mark.slow

STOP_BOUND_S = 15.0  # from the signal to the last process gone
READY_BOUND_S = 90.0  # a busy machine: two workers import the ML stack side by side
ROW = [5.1, 3.5, 1.4, 0.2]  # models without a signature take rows of numbers


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three production models of the python flavor: two that answer zeros at once (and
    can be made slow to load), one slow to predict. Python models keep the start of
    every server short: this file starts ten."""
    home = tmp_path_factory.mktemp("serve-signals") / "home"
    with Client(Settings(home=home)) as client:
        registry = client.registry
        for name, target in (("zeros", "Zeros"), ("zeros-too", "Zeros"),
                             ("slow", "SlowPredict")):
            v = registry.register(f"tests.cli.signal_models:{target}", name=name,
                                  flavor="python")
            registry.transition(name, v.version, "staging")
            registry.transition(name, v.version, "production")
    return home


@dataclass
class Serve:
    """One `modelhost serve` process, leader of a session of its own (as a terminal's
    foreground job is), so that its whole process tree can be found and signalled."""

    home: Path
    folder: Path
    args: tuple[str, ...]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    metrics_dirs: set[Path] = field(default_factory=set)

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    @property
    def marks(self) -> Path:
        return self.folder / "marks"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.marks.mkdir(parents=True)
        env = server_env(self.home, STOP_TEST_MARKS=str(self.marks), **self.env)
        self.metrics_dirs = self.find_metrics_dirs(env)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(MODELHOST), "serve", "--port", str(self.port), *self.args],
                env=env, cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def find_metrics_dirs(self, env: dict[str, str] | None = None) -> set[Path]:
        """The Prometheus folders that `serve --workers N` makes in its temp folder."""
        tmp = Path((env or server_env(self.home))["TMPDIR"])
        return set(tmp.glob("modelhost-metrics-*"))

    def wait_until(self, check: Callable[[], bool], what: str,
                   timeout_s: float = READY_BOUND_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not check():
            assert self.proc.poll() is None, \
                f"exited with {self.proc.returncode} before {what}\n{self.output()}"
            assert time.monotonic() < deadline, f"not {what} after {timeout_s:.0f} s\n" \
                                                f"{self.output()}"
            time.sleep(0.002)

    def wait_ready(self) -> None:
        with httpx.Client(base_url=self.url, timeout=2) as http:
            def ready() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return http.get("/readyz").status_code == 200
                return False

            self.wait_until(ready, "ready")

    def signal(self, sig: int, *, group: bool = False) -> float:
        """Send ``sig`` to the server (or, like a terminal's Ctrl-C, to its whole
        process group); return when."""
        assert self.proc is not None
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        return time.monotonic()

    def leftovers(self) -> list[str]:
        """Live processes of the server's session, or with its command line."""
        assert self.proc is not None
        found = []
        for pid, session, state, command in _processes():
            if state != "Z" and (session == self.proc.pid
                                 or f"serve --port {self.port} " in f"{command} "):
                found.append(f"{pid} {command}")
        return found

    def assert_stopped(self, since: float, *, status: int = 0,
                       bound_s: float = STOP_BOUND_S) -> None:
        """Gone with ``status`` within ``bound_s`` of ``since``, with every child, and
        the port free."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=max(0.0, since + bound_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {bound_s:.0f} s after the signal\n"
                                 f"{self.output()}") from None
        while self.leftovers() and time.monotonic() < since + bound_s:
            time.sleep(0.05)
        assert not self.leftovers(), f"left behind: {self.leftovers()}\n{self.output()}"
        assert code == status, f"exit status {code}, not {status}\n{self.output()}"
        assert _port_free(self.port), f"port {self.port} still taken\n{self.output()}"
        assert "Traceback" not in self.output(), self.output()
        if status == 0:  # what a graceful stop made, it removed
            assert self.find_metrics_dirs() == self.metrics_dirs

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _processes() -> Iterator[tuple[int, int, str, str]]:
    """(pid, session id, state, command line) of every process, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        yield int(entry.name), int(fields[3]), fields[0], command.strip()


def _port_free(port: int) -> bool:
    """Nothing listens on the port, and a new server could listen on it."""
    with socket.socket() as probe:
        try:
            probe.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            pass
        else:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@pytest.fixture
def serve(home: Path, tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str, **env: str) -> Serve:
        server = Serve(home=home, folder=tmp_path / f"serve-{len(started)}", args=args,
                       env=env)
        server.folder.mkdir()
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:  # whatever a failed test left running
            server.kill()


def _predict(url: str, model: str, results: list[Any], timeout_s: float = 30) -> None:
    with httpx.Client(base_url=url, timeout=timeout_s) as http:
        try:
            results.append(http.post(f"/v1/models/{model}/predict", json={"inputs": [ROW]}))
        except httpx.HTTPError as exc:
            results.append(exc)


def _hammer(url: str, stop: threading.Event, results: list[Any]) -> None:
    """Predict in a loop on one kept-alive connection, reconnecting when the
    server closes it, until ``stop``."""
    with httpx.Client(base_url=url, timeout=20) as http:
        while not stop.is_set():
            try:
                results.append(http.post("/v1/models/zeros/predict",
                                         json={"inputs": [ROW]}).status_code)
            except httpx.HTTPError as exc:
                results.append(type(exc).__name__)
                time.sleep(0.05)


WORKERS = [pytest.param("1", id="1-worker"), pytest.param("2", id="2-workers")]


# --- SIGTERM at each phase of start-up --------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
def test_sigterm_before_the_server_answers(serve: Callable[..., Serve],
                                           workers: str) -> None:
    server = serve("--workers", workers)
    server.wait_until(lambda: "modelhost serving on" in server.output(), "announced")
    sent = server.signal(signal.SIGTERM)
    server.assert_stopped(sent)
    assert "draining (SIGTERM again to stop now)" in server.output()


@pytest.mark.parametrize("workers", WORKERS)
def test_sigterm_while_a_model_loads(serve: Callable[..., Serve], workers: str) -> None:
    server = serve("--workers", workers, STOP_TEST_LOAD_S="2")
    server.wait_until(lambda: marks(server.marks, "load") > 0, "loading")
    sent = server.signal(signal.SIGTERM)
    server.assert_stopped(sent)


@pytest.mark.parametrize("workers", WORKERS)
def test_sigterm_just_after_ready(serve: Callable[..., Serve], workers: str) -> None:
    server = serve("--workers", workers)
    server.wait_ready()
    sent = server.signal(signal.SIGTERM)
    server.assert_stopped(sent)


@pytest.mark.parametrize("workers", WORKERS)
def test_sigterm_under_load_finishes_the_requests_in_flight(serve: Callable[..., Serve],
                                                             workers: str) -> None:
    # One request per batch: each slow request is a model call of its own.
    server = serve("--workers", workers, "--max-batch-size", "1")
    server.wait_ready()
    stop = threading.Event()
    hammered: list[list[Any]] = [[] for _ in range(3)]
    slow: list[Any] = []
    threads = [threading.Thread(target=_hammer, args=(server.url, stop, results))
               for results in hammered]
    threads += [threading.Thread(target=_predict, args=(server.url, "slow", slow))
                for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        server.wait_until(lambda: marks(server.marks, "predict") > 0
                          and all(results for results in hammered), "under load")
        time.sleep(0.2)  # both slow requests are in: one predicting, or both
        sent = server.signal(signal.SIGTERM)
        server.assert_stopped(sent)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    for response in slow:  # accepted before the signal: answered in full
        assert isinstance(response, httpx.Response), repr(response)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == [0]
    statuses = [r for results in hammered for r in results]
    # Answered, or refused / closed between two requests once the drain began.
    assert set(statuses) <= {200, "ConnectError", "RemoteProtocolError", "ReadError",
                             "WriteError"}, sorted(set(map(str, statuses)))
    assert statuses.count(200) > 3


# --- Ctrl-C twice: stop now ------------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
def test_second_ctrl_c_stops_at_once_with_status_130(serve: Callable[..., Serve],
                                                     workers: str) -> None:
    server = serve("--workers", workers, STOP_TEST_PREDICT_S="20")
    server.wait_ready()
    slow: list[Any] = []
    request = threading.Thread(target=_predict, args=(server.url, "slow", slow))
    request.start()
    try:
        server.wait_until(lambda: marks(server.marks, "predict") > 0, "predicting")
        # A terminal sends Ctrl-C to the whole foreground process group.
        server.signal(signal.SIGINT, group=True)
        time.sleep(1.0)
        assert server.proc is not None and server.proc.poll() is None, \
            f"the first Ctrl-C did not wait for the request in flight\n{server.output()}"
        sent = server.signal(signal.SIGINT, group=True)
        # At once: long before the 20 s request could have finished.
        server.assert_stopped(sent, status=130, bound_s=5)
    finally:
        request.join(timeout=30)
    assert len(slow) == 1 and isinstance(slow[0], httpx.HTTPError), slow
    said = server.output().splitlines()
    assert said.count("draining (Ctrl-C again to stop now)") == 1, said
    assert said[-1] == "stopping now", said


# --- the port and the host are checked first -------------------------------------------


def _serve_now(home: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MODELHOST), "serve", *args], env=server_env(home),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_busy_port_is_refused_before_anything_starts(home: Path, tmp_path: Path,
                                                       workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve_now(home, tmp_path, "--port", str(port), "--workers", workers)
    assert done.returncode == 5, done.stderr
    assert done.stderr.splitlines() == [
        f"error: port {port} is in use; stop the process that holds it or choose "
        "another with --port"], done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(("host", "reason"), [
    ("192.0.2.1", "not an address of this machine"),  # TEST-NET-1: nobody's
    ("nosuch.invalid", "unknown host"),
])
def test_a_host_that_cannot_be_listened_on_is_one_line(home: Path, tmp_path: Path,
                                                       host: str, reason: str) -> None:
    done = _serve_now(home, tmp_path, "--host", host, "--port", str(free_port()))
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: cannot listen on {host}:"), line
    assert reason in line and "127.0.0.1 or 0.0.0.0" in line, line
