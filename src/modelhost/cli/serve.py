"""``modelhost serve`` and ``modelhost predict``."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import STATE, app, emit, err

if TYPE_CHECKING:  # loaded by the commands, not by every `modelhost` call
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
) -> None:
    """Run the prediction and management server."""
    run_server(STATE.settings(), host=host, port=port, workers=workers, log_level=log_level,
               overrides={"MODELHOST_SERVE_MODEL": model,
                          "MODELHOST_MAX_BATCH_SIZE": max_batch_size,
                          "MODELHOST_MAX_WAIT_MS": max_wait_ms})


def run_server(settings: Settings, *, host: str, port: int, workers: int = 1,
               log_level: str = "warning", overrides: dict[str, Any] | None = None) -> None:
    """Serve until interrupted; every worker reads its settings from the environment."""
    import uvicorn

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
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelhost-metrics-")
    config = uvicorn.Config("modelhost.asgi:app_factory", factory=True, host=host,
                            port=port, workers=workers, loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_level=log_level,
                            proxy_headers=False,  # not behind a proxy by default
                            timeout_graceful_shutdown=30,
                            # Workers import the ML stack before answering the
                            # supervisor's ping; on a busy host that exceeds 5 s.
                            timeout_worker_healthcheck=60)
    err.print(f"modelhost serving on http://{host}:{port} with {workers} worker(s); "
              "docs at /docs; Ctrl+C stops", highlight=False)
    if auth == "off":
        where = "bound to loopback" if is_loopback(host) else "turned off by MODELHOST_AUTH=off"
        err.print(f"authentication is OFF ({where}): anyone who can connect can predict "
                  "and change models", highlight=False)
    else:
        err.print("authentication is on: send 'Authorization: Bearer <key>'"
                  + ("" if keys else "; no key exists yet, create one with "
                     "'modelhost keys create --name admin --role admin'"), highlight=False)
    server = uvicorn.Server(config)
    if workers == 1:
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete; with this
        # handler in place that ends the process normally (exit 0) after the drain.
        signal.signal(signal.SIGTERM, lambda *_: None)
        server.run()
        return
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    # Accepted connections inherit TCP_NODELAY from the listening socket; without it,
    # small responses wait for Nagle's algorithm (~40 ms) in multi-worker mode.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()


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

    registry = STATE.client().registry
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
