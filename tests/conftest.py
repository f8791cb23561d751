"""Shared fixtures: a migrated SQLite database copied per test, a real PostgreSQL
database for the store suite, and a Client wired to either."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from modelhost import Client, Settings
from modelhost.store import Database
from modelhost.store.schema import Base
from tests.fixtures_models import iris_example, iris_model
from tests.services import fresh_postgres_database

TODAY = dt.date(2026, 11, 21)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "modelhost.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database(f"modelhost_test_{os.getpid()}") as url:
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of an empty, migrated database: SQLite, then the same tests on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "modelhost.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(home=tmp_path / "home", db_url=db_url,
                    artifacts=str(tmp_path / "artifacts"))


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings, today=lambda: TODAY) as c:
        yield c


@pytest.fixture
def sqlite_client(tmp_path: Path, sqlite_template: Path) -> Iterator[Client]:
    """A client on SQLite only, for tests that are not about the database."""
    path = tmp_path / "modelhost.db"
    shutil.copy(sqlite_template, path)
    settings = Settings(home=tmp_path / "home", db_url=f"sqlite:///{path}",
                        artifacts=str(tmp_path / "artifacts"))
    with Client(settings, today=lambda: TODAY) as c:
        yield c


def head_revision() -> str:
    """The newest Alembic revision of the store's migrations."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from modelhost.store.database import _MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def with_iris(client: Client) -> Client:
    """``client`` with iris 1.0.0 in production and 1.0.1 registered."""
    registry = client.registry
    v1 = registry.register(iris_model(), name="iris", input_example=iris_example())
    registry.register(iris_model(C=0.01), name="iris", input_example=iris_example())
    registry.transition("iris", v1.version, "staging")
    registry.transition("iris", v1.version, "production")
    return client


@pytest.fixture
def iris_client(sqlite_client: Client) -> Client:
    """A registry with iris 1.0.0 in production and 1.0.1 registered."""
    return with_iris(sqlite_client)
