"""The database layer: migrations, SQLite settings, and a database that is locked or down."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from tests.conftest import head_revision
from tests.fixtures_models import iris_example, iris_model

from modelhost import Client, Settings
from modelhost.errors import StoreUnavailableError
from modelhost.store import Database
from modelhost.store.schema import Base


def test_migrations_match_the_tables(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    db = Database(db_url)
    assert db.upgrade() == db.upgrade() == db.current_revision() == head_revision()
    db.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_s=2.5)
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 2500
    db.dispose()


def test_locked_sqlite_database_is_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_busy_timeout_s=0.2)
    client = Client(settings)
    locker = sqlite3.connect(tmp_path / "modelhost.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError, match="locked by another process"):
            client.registry.register(iris_model(), name="iris", input_example=iris_example())
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert client.registry.list_models() == []
    blobs = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert blobs == []
    client.close()


def test_database_down_is_unavailable(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url="postgresql+psycopg://postgres@127.0.0.1:1/x",
                        db_connect_timeout_s=1)
    with pytest.raises(StoreUnavailableError) as info:
        Client(settings)
    assert "cannot connect to the database server" in info.value.message
    assert "127.0.0.1" not in info.value.message


@pytest.mark.postgres
def test_postgres_lock_wait_is_bounded_by_the_busy_timeout(tmp_path: Path,
                                                           postgres_url: str) -> None:
    import time

    from sqlalchemy import create_engine
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    settings = Settings(home=tmp_path, db_url=postgres_url, db_busy_timeout_s=0.5)
    with Client(settings) as client:
        client.registry.register(iris_model(), name="iris", input_example=iris_example())
        holder = create_engine(postgres_url)
        with holder.connect() as conn:
            conn.execute(text("BEGIN"))
            conn.execute(text("SELECT * FROM models WHERE name = 'iris' FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="locked"):
                client.registry.transition("iris", "1.0.0", "staging")
            assert time.monotonic() - started < 5
            conn.execute(text("ROLLBACK"))
        holder.dispose()
        assert client.registry.get_version("iris", "1.0.0").stage.value == "none"


def test_first_start_from_several_processes_migrates_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("from modelhost import Client, Settings; import sys; "
            "Client(Settings(home=sys.argv[1])).close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stderr=subprocess.PIPE) for _ in range(4)]
    outcomes = [(p.communicate(timeout=120)[1], p.returncode) for p in procs]
    assert [err for err, code in outcomes if code != 0] == []
    assert Database(f"sqlite:///{tmp_path / 'modelhost.db'}").current_revision() == head_revision()


def test_a_damaged_database_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "modelhost.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailableError, match="damaged or is not a modelhost database"):
        Client(Settings(home=tmp_path))
