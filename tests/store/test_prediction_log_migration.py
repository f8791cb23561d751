"""Migration 0007 moves the prediction log from a row per request to chunks and back,
and nothing logged is lost either way; on SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from tests.services import require_postgres

from modelhost.store import Database
from modelhost.store.database import _MIGRATIONS
from modelhost.store.monitoring import Label, PredictionLogStore

T0 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (the shared test databases are at head)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin_url = require_postgres()
    name = f"modelhost_migration_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(db: Database, revision: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with db.engine.execution_options(modelhost_write=True).begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def old_rows() -> list[dict[str, Any]]:
    """1,203 requests: 1,201 of iris 1.0.0 (three chunks' worth, written out of time
    order), one of iris 2.0.0 and one of another model; tables, tensors, probabilities."""
    rows = []
    for i in range(1201):
        rows.append({"request_id": f"r{i}", "model": "iris", "version": "1.0.0",
                     "arm": "stable" if i % 2 else None,
                     "at": T0 + dt.timedelta(seconds=(i * 7919) % 1201), "rows": 1,
                     "inputs": orjson.dumps({"columns": ["a", "b"], "data": [[i, 0.5]]}).decode(),
                     "outputs": orjson.dumps({"predictions": [i % 3],
                                              "probabilities": [[0.1, 0.2, 0.7]]}).decode()})
    rows.append({"request_id": "v2", "model": "iris", "version": "2.0.0", "arm": "canary",
                 "at": T0, "rows": 2, "inputs": "[[1.0, 2.0], [3.0, 4.0]]",
                 "outputs": '{"predictions": ["setosa", "virginica"]}'})
    rows.append({"request_id": "wine", "model": "wine", "version": "1.0.0", "arm": None,
                 "at": T0 - dt.timedelta(days=3), "rows": 1, "inputs": '{"x": [[1]]}',
                 "outputs": '{"predictions": [0.25]}'})
    return rows


def read_old(db: Database) -> dict[str, dict[str, Any]]:
    with db.engine.connect() as conn:
        found = {}
        for row in conn.execute(text("SELECT * FROM prediction_log")).mappings():
            found[row["request_id"]] = {
                **row, "at": _utc(row["at"]), "inputs": orjson.loads(row["inputs"]),
                "outputs": orjson.loads(row["outputs"])}
        return found


def _utc(at: Any) -> dt.datetime:
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at


def test_logged_requests_survive_the_move_to_chunks_and_back(empty_url: str) -> None:
    db = Database(empty_url)
    migrate(db, "0006")
    rows = old_rows()
    with db.engine.begin() as conn:
        conn.execute(text(
            'INSERT INTO prediction_log (request_id, model, version, arm, at, "rows", inputs, '
            "outputs) VALUES (:request_id, :model, :version, :arm, :at, :rows, :inputs, "
            ":outputs)"), rows)
    before = read_old(db)
    assert len(before) == 1203

    migrate(db, "head")
    store = PredictionLogStore(db)
    found = store.find(before)
    assert set(found) == set(before)
    for request_id, old in before.items():
        new = found[request_id]
        assert (new.model, new.version, new.arm, new.at, new.rows, new.inputs, new.outputs) \
            == (old["model"], old["version"], old["arm"], old["at"], old["rows"],
                old["inputs"], old["outputs"]), request_id
    with db.engine.connect() as conn:
        chunks = conn.execute(text(
            "SELECT model, version, requests FROM prediction_chunks ORDER BY id")).all()
    assert sorted(tuple(c) for c in chunks) == sorted([
        ("iris", "1.0.0", 500), ("iris", "1.0.0", 500), ("iris", "1.0.0", 201),
        ("iris", "2.0.0", 1), ("wine", "1.0.0", 1)])
    # The moved log answers the feedback join like the new one.
    store.record_feedback([Label("r5", "iris", "1.0.0", "[2]")], now=T0)
    logged, pairs = store.labelled("iris", "1.0.0", start=T0, end=T0 + dt.timedelta(hours=1))
    assert logged == 1201 and pairs == [(before["r5"]["outputs"], [2])]

    migrate(db, "0006", down=True)
    assert read_old(db) == before
    db.dispose()


def test_binary_rows_go_back_as_json_on_a_downgrade(empty_url: str) -> None:
    import numpy as np

    from modelhost.monitoring import LogOptions, PredictionLog

    class Seen:
        def __init__(self, request_id: str, inputs: Any) -> None:
            self.request_id, self.inputs = request_id, inputs
            self.model, self.version, self.arm, self.status = "iris", "1.0.0", None, 200
            self.rows, self.predictions, self.probabilities = len(inputs), [0], None
            self.at, self.latency_s = time.time(), 0.001

    db = Database(empty_url)
    migrate(db, "head")
    log = PredictionLog(PredictionLogStore(db), options=LogOptions(max_per_s=1e9),
                        columns=lambda m, v: ["a", "b"])
    log.observe(Seen("binary", np.array([[1.5, np.nan]])))
    log.observe(Seen("tensor", [[1, 2, 3]]))
    assert log.flush() == 2
    migrate(db, "0006", down=True)
    old = read_old(db)
    assert old["binary"]["inputs"] == {"columns": ["a", "b"], "data": [[1.5, None]]}
    assert old["tensor"]["inputs"] == [[1, 2, 3]]
    db.dispose()
