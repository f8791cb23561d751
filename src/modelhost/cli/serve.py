"""``modelhost serve`` and ``modelhost predict``."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import STATE, app, emit, err
from modelhost.errors import BindError, ModelhostError, PortInUseError

if TYPE_CHECKING:  # loaded by the commands, not by every `modelhost` call
    import uvicorn

    from modelhost.config import Settings


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Worker processes; they share only the database."),
    model: str | None = typer.Option(None, "--model", help="Serve only this model, with "
                                     "MLflow's /invocations routes."),
    max_batch_size: int | None = typer.Option(None, "--max-batch-size", min=1),
    max_wait_ms: float | None = typer.Option(None, "--max-wait-ms", min=0),
    log_level: str = typer.Option("warning", "--log-level"),
    ssl_certfile: Path | None = typer.Option(
        None, "--ssl-certfile", help="PEM certificate (with its chain): serve HTTPS. "
        "Default: MODELHOST_SSL_CERTFILE."),
    ssl_keyfile: Path | None = typer.Option(
        None, "--ssl-keyfile", help="PEM private key of the certificate (unencrypted). "
        "Default: MODELHOST_SSL_KEYFILE."),
) -> None:
    """Run the prediction and management server."""
    settings = STATE.settings(local_only=True)
    if settings.streams is not None:  # a mistake in MODELHOST_STREAMS: exit 1 now
        from modelhost.streams.config import parse_streams

        parse_streams(settings.streams.get_secret_value())
    run_server(settings, host=host, port=port, workers=workers, log_level=log_level,
               overrides={"MODELHOST_SERVE_MODEL": model,
                          "MODELHOST_MAX_BATCH_SIZE": max_batch_size,
                          "MODELHOST_MAX_WAIT_MS": max_wait_ms},
               tls=tls_files(ssl_certfile or settings.ssl_certfile,
                             ssl_keyfile or settings.ssl_keyfile))


def tls_files(certfile: Path | None, keyfile: Path | None) -> tuple[str, str] | None:
    """The certificate and key to serve HTTPS with, checked before anything starts:
    both or neither, readable, PEM, and the key the certificate's. Raises
    InvalidInputError or FileNotFoundInputError naming the problem (never the key's
    contents)."""
    import ssl

    from modelhost.errors import FileNotFoundInputError, InvalidInputError

    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise InvalidInputError("HTTPS needs both --ssl-certfile and --ssl-keyfile "
                                "(or MODELHOST_SSL_CERTFILE and MODELHOST_SSL_KEYFILE)")
    for path in (certfile, keyfile):
        if not path.is_file():
            raise FileNotFoundInputError(str(path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The key must not ask for a password: a server cannot type one.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(
            exc) else "they are not a PEM certificate and its unencrypted PEM key"
        raise InvalidInputError(f"cannot serve HTTPS with {certfile.name} and "
                                f"{keyfile.name}: {reason}") from None
    except OSError as exc:  # unreadable
        raise InvalidInputError(f"cannot read {certfile.name} or {keyfile.name}: "
                                f"{exc.strerror or type(exc).__name__}") from None
    return str(certfile.resolve()), str(keyfile.resolve())


def run_server(settings: Settings, *, host: str, port: int, workers: int = 1,
               log_level: str = "warning", overrides: dict[str, Any] | None = None,
               tls: tuple[str, str] | None = None) -> None:
    """Serve until stopped by SIGINT or SIGTERM (see :class:`StopSignals`); every worker
    reads its settings from the environment. ``tls``: (certificate, key) files, checked
    by :func:`tls_files`, to serve HTTPS.

    Raises:
        PortInUseError: another process listens on ``port``.
        BindError: ``host`` is unknown or not this machine's, or ``port`` is privileged.
    """
    import uvicorn

    stop = StopSignals()
    stop.install()  # before anything is bound or loaded: no stop signal is ever lost

    os.environ["MODELHOST_HOME"] = str(settings.home.resolve())
    for key, value in (("MODELHOST_DB_URL", settings.db_url),
                       ("MODELHOST_ARTIFACTS", settings.artifacts),
                       *(overrides or {}).items()):
        if value is not None:
            os.environ[key] = str(value)
    auth = resolve_auth(settings.auth, host)
    os.environ["MODELHOST_AUTH"] = auth
    from modelhost.client import Client
    from modelhost.config import Settings

    with Client(Settings()) as client:  # migrate once, before any worker starts
        keys = client.keys.list() if auth == "required" else []
    _console_secret_or_refuse(Settings())
    config = uvicorn.Config("modelhost.asgi:app_factory", factory=True, host=host,
                            port=port, workers=workers, loop="uvloop",
                            http="modelhost.serving.transport:OneWriteProtocol",
                            lifespan="on", access_log=False, log_level=log_level,
                            proxy_headers=False,  # not behind a proxy by default
                            timeout_graceful_shutdown=30,
                            # Workers import the ML stack before answering the
                            # supervisor's ping; on a busy host that exceeds 5 s.
                            timeout_worker_healthcheck=60,
                            ssl_certfile=tls[0] if tls else None,
                            ssl_keyfile=tls[1] if tls else None)
    sock = bind_socket(host, port)  # uvicorn serves on this very socket
    metrics_dir = None  # made here, so removed here
    try:
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix="modelhost-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        address = f"[{host}]" if ":" in host and not host.startswith("[") else host
        scheme = "https" if tls else "http"
        base = f"{scheme}://{address}:{sock.getsockname()[1]}"
        err.print(f"modelhost serving on {base} with {workers} worker(s); console at "
                  f"{base}/ui, API docs at /docs; Ctrl+C stops", highlight=False)
        if auth == "off":
            where = ("bound to loopback" if is_loopback(host)
                     else "turned off by MODELHOST_AUTH=off")
            err.print(f"authentication is OFF ({where}): anyone who can connect can "
                      "predict and change models", highlight=False)
        else:
            err.print("authentication is on: send 'Authorization: Bearer <key>'"
                      + ("" if keys else "; no key exists yet, create one with "
                         "'modelhost keys create --name admin --role admin'"),
                      highlight=False)
        if stop.stopping:  # stopped while starting: nothing to serve or drain
            return
        if workers == 1:
            _serve_one(config, sock, stop)
        else:
            _serve_workers(config, sock, stop)
    finally:
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@app.command("predict")
def predict(
    name: str,
    input: Path = typer.Option(..., "--input", help="A .json (records, columns or "
                               '{"inputs": ...}) or .csv file.'),
    version: str = typer.Option("@production", "--version",
                                help="Version, alias, latest or @stage."),
) -> None:
    """Predict in-process with a registered version (no server needed); prints JSON.

    A version without a signature gets the file's columns as they are."""
    from modelhost.cli.inputs import read_input_file

    registry = STATE.client(local_only=True).registry
    loaded = registry.load(name, version)
    emit(loaded.predict(read_input_file(input)).to_dict(), as_json=True)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_auth(configured: str | None, host: str) -> str:
    """``required`` unless the server binds to loopback or auth is explicitly off."""
    if configured is not None:
        return configured
    return "off" if is_loopback(host) else "required"


# --- the listening socket and the stop signals -------------------------------------------

_BACKLOG = 2048  # uvicorn's default; it listens on the socket again with the same value
# The signals that stop a server, as the "again to stop now" hint names them.
_STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def bind_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before anything is printed or loaded.

    A busy port or a bad host fails at once, and since uvicorn serves on this very
    socket nothing can take the port between this check and the server. Connections
    made while the app starts wait in the backlog.

    Raises:
        PortInUseError: another process listens on ``port``.
        BindError: ``host`` is unknown or not an address of this machine, or ``port``
            needs privileges this process does not have.
    """
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A port whose old connections linger in TIME_WAIT can be used again; a port
        # with a listener cannot (listen() refuses it even where bind() does not).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit TCP_NODELAY from the listening socket; without
        # it, small responses wait for Nagle's algorithm (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from exc
    sock.set_inheritable(True)  # the workers serve on it
    return sock


def _console_secret_or_refuse(settings: Settings) -> None:
    """Make (or read) the console's session secret once, before the workers read it,
    and refuse to start with a clear message when the home folder cannot keep it."""
    from modelhost.asgi import console_secret
    from modelhost.errors import InvalidInputError

    try:
        console_secret(settings)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot keep the web console's session secret in the home folder "
            f"({exc.strerror or exc}); set MODELHOST_CONSOLE_SECRET (at least 16 "
            "characters, the same on every replica)") from exc


def _bind_error(host: str, port: int, exc: OSError) -> ModelhostError:
    if isinstance(exc, socket.gaierror):
        reason = "unknown host; use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
    elif exc.errno == errno.EADDRINUSE:
        return PortInUseError(port)
    elif exc.errno == errno.EACCES:
        reason = ("permission denied (ports below 1024 need privileges); use a port from "
                  "1024 up")
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason = ("not an address of this machine; use one of its addresses, e.g. "
                  "127.0.0.1 or 0.0.0.0")
    else:
        reason = exc.strerror or type(exc).__name__
    return BindError(host, port, reason)


class StopSignals:
    """SIGINT and SIGTERM for the whole life of a server process.

    The first one drains: the server stops accepting connections, finishes the requests
    it has and exits 0. A second one stops at once, dropping what is in flight, with
    exit status 128 + its number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a
    process ended by that signal. The handlers are installed before anything is bound or
    loaded and stay until the process ends; uvicorn's own are never used, so no signal
    can arrive between two handlers and be lost.
    """

    def __init__(self) -> None:
        self.stopping = False
        self._first: int = signal.SIGTERM
        self._drain: Callable[[int], None] = lambda _sig: None
        self._force: Callable[[], None] = lambda: None

    def install(self) -> None:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def attach(self, *, drain: Callable[[int], None], force: Callable[[], None]) -> None:
        """Pass the next signals to a server about to run, and a stop asked already."""
        self._drain, self._force = drain, force
        if self.stopping:
            drain(self._first)

    def _handle(self, sig: int, _frame: FrameType | None) -> None:
        if self.stopping:
            _say("stopping now")
            try:
                self._force()
            finally:
                _exit_now(128 + sig)
            return
        self.stopping, self._first = True, sig
        _say(f"draining ({_STOP_SIGNALS[signal.Signals(sig)]} again to stop now)")
        self._drain(sig)


def _serve_one(config: uvicorn.Config, sock: socket.socket, stop: StopSignals) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # StopSignals has SIGINT and SIGTERM for the whole process

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            if not self.should_exit:  # stopped while the app was imported: start nothing
                await super().startup(sockets=sockets)

    server = Server(config)

    def drain(_sig: int) -> None:
        server.should_exit = True  # uvicorn's loop sees it within 0.1 s

    stop.attach(drain=drain, force=lambda: None)
    server.run(sockets=[sock])


def _serve_workers(config: uvicorn.Config, sock: socket.socket, stop: StopSignals) -> None:
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            super().terminate_all()
            # The workers drain: refuse new connections now rather than leave them in
            # the backlog of a socket that no worker accepts from any more.
            for listener in self.sockets:
                listener.close()

    # Multiprocess installs handlers of its own: hold the stop signals until ours are
    # back, so that none is handled by the wrong one.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        supervisor = Supervisor(config, sockets=[sock])

        def drain(sig: int) -> None:
            supervisor.signal_queue.append(sig)  # its loop stops the workers gracefully

        def force() -> None:
            workers = [w.process for w in supervisor.processes]
            # and any child still starting, which the supervisor does not list yet
            pids = {w.pid for w in workers if w.pid is not None} | _child_pids()
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for worker in workers:
                worker.join(timeout=5)

        stop.install()
        stop.attach(drain=drain, force=force)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if not stop.stopping:
        supervisor.run()


def _child_pids() -> set[int]:
    """The direct children of this process (Linux; elsewhere none are found)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(pid) for pid in task.read_text().split())
    return pids


def _say(line: str) -> None:
    """One line on stderr, safe in a signal handler (no buffer that may be mid-write)."""
    with contextlib.suppress(OSError):  # a closed stderr must not stop the server stopping
        os.write(2, f"{line}\n".encode())


def _exit_now(code: int) -> None:
    """End the process at once: no drain, no waiting for threads still running."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
