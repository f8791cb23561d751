"""The database: engine construction, one managed session, migrations, error translation."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from modelhost.errors import (
    ConflictError,
    InvalidInputError,
    MissingDependencyError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any number unique to modelhost: serialises migrations of concurrent processes.
_PG_MIGRATION_LOCK = 0x6D6F64656C68


_REVISION = re.compile(r"^(down_revision|revision)\b[^=]*=(.*)$", re.MULTILINE)


@functools.cache
def head_revision() -> str | None:
    """The newest migration: the one revision no other revises; None if that is not one
    revision (a branch), or the files cannot be read."""
    revisions: set[str] = set()
    revised: set[str] = set()
    try:
        for file in (_MIGRATIONS / "versions").glob("*.py"):
            for key, value in _REVISION.findall(file.read_text(encoding="utf-8")):
                names = set(re.findall(r"['\"]([^'\"]+)['\"]", value))
                (revisions if key == "revision" else revised).update(names)
    except OSError:
        return None
    heads = revisions - revised
    return next(iter(heads)) if len(heads) == 1 else None


class WriteConflictError(ConflictError):
    """A write collided with a concurrent one on a unique constraint."""

    def __init__(self) -> None:
        super().__init__("another change to the same record happened at the same time; "
                         "try again")


class Database:
    """Owns the engine and hands out transactional sessions.

    The constructor does no I/O; the first session (or :meth:`upgrade`) connects.
    """

    def __init__(self, url: str, *, busy_timeout_s: float = 5.0,
                 connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self._busy_timeout_s = busy_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._write_sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = create_engine_for(self.url, busy_timeout_s=self._busy_timeout_s,
                                                 connect_timeout_s=self._connect_timeout_s)
                self._sessions = sessionmaker(self._engine, expire_on_commit=False)
                self._write_sessions = sessionmaker(
                    self._engine.execution_options(modelhost_write=True),
                    expire_on_commit=False)
            return self._engine

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        ``write=True`` takes SQLite's write lock when the transaction starts (BEGIN
        IMMEDIATE), so that concurrent writers queue on the busy timeout instead of
        failing when a read transaction tries to upgrade itself.

        Database errors leave as modelhost errors: a violated constraint becomes
        :class:`WriteConflictError` (callers that know which constraint means what catch
        it), a value the database refuses becomes :class:`InvalidInputError`, and a
        locked or unreachable database becomes :class:`StoreUnavailableError`.
        """
        _ = self.engine
        factory = self._write_sessions if write else self._sessions
        assert factory is not None
        session = factory()
        try:
            yield session
            session.commit()
        except IntegrityError as exc:
            _safe_rollback(session)
            raise WriteConflictError() from exc
        except DataError as exc:
            _safe_rollback(session)
            raise InvalidInputError(
                "a value was refused by the database (too long, or not a valid number)"
            ) from exc
        except DBAPIError as exc:
            _safe_rollback(session)
            raise translate_operational(exc) from exc
        except BaseException:
            _safe_rollback(session)
            raise
        finally:
            session.close()

    def upgrade(self) -> str:
        """Apply every pending Alembic migration; return the revision now current."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        from alembic.util import CommandError

        engine = self.engine.execution_options(modelhost_write=True)
        try:
            with engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                 {"k": _PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                return str(MigrationContext.configure(conn).get_current_revision())
        except CommandError as exc:
            raise StoreUnavailableError(
                "the metadata database",
                "its schema is newer than this version of modelhost understands; upgrade "
                "modelhost") from exc
        except DBAPIError as exc:
            raise translate_operational(exc) from exc

    def ensure_current(self) -> None:
        """Apply pending migrations, unless the schema is at the newest revision already.

        That check reads the ``alembic_version`` table and the migration files without
        importing Alembic, which would add about 0.2 s to every command-line call.
        """
        head = head_revision()
        if head is not None:
            try:
                with self.engine.connect() as conn:
                    current = conn.execute(text("SELECT version_num FROM alembic_version")
                                           ).scalars().all()
            except DBAPIError:  # no table yet, or unreachable: upgrade() says which
                current = []
            if current == [head]:
                return
        self.upgrade()

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except DBAPIError as exc:
            raise translate_operational(exc) from exc

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._sessions = None
            self._write_sessions = None


def _safe_rollback(session: Session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:  # the connection may be gone; nothing left to undo
        log.debug("rollback failed", exc_info=True)


def translate_operational(exc: Exception,
                          what: str = "the metadata database") -> StoreUnavailableError:
    """A short, secret-free reason for a database that is locked, down or unreachable."""
    text_ = str(getattr(exc, "orig", exc)).lower()
    if "locked" in text_ or "busy" in text_ or "lock timeout" in text_:
        reason = "the database is locked by another process"
    elif "connect" in text_ or "refused" in text_ or "timeout" in text_ or "resolve" in text_:
        reason = "cannot connect to the database server"
    elif "unable to open" in text_ or "readonly" in text_ or "read-only" in text_:
        reason = "the database file cannot be opened for writing"
    elif "not a database" in text_ or "malformed" in text_:
        reason = "the database file is damaged or is not a modelhost database"
    else:
        reason = "the database rejected the operation"
    return StoreUnavailableError(what, reason)


def create_engine_for(url: str, *, busy_timeout_s: float, connect_timeout_s: float,
                      setting: str = "MODELHOST_DB_URL",
                      what: str = "the metadata database") -> Engine:
    """An engine for ``url`` (SQLite with WAL and a busy timeout, PostgreSQL through
    psycopg with a lock timeout); errors name ``setting`` and ``what``."""
    try:
        parsed = make_url(url)
    except SQLAlchemyError as exc:
        raise InvalidInputError(f"{setting} is not a valid database URL") from exc
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": backend != "sqlite"}
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailableError(
                    what,
                    f"its folder cannot be created ({exc.strerror or type(exc).__name__})",
                ) from exc
        kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # A lock held by another transaction fails after the busy timeout instead of
        # waiting forever, as SQLite's busy timeout does.
        kwargs["connect_args"] = {
            "connect_timeout": max(1, int(connect_timeout_s)),
            "options": f"-c lock_timeout={int(busy_timeout_s * 1000)}",
        }
    try:
        engine = create_engine(parsed, **kwargs)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("a PostgreSQL database", "postgres") from exc
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms=int(busy_timeout_s * 1000))
    return engine


_WAL_UNSUPPORTED = re.compile(r":memory:|mode=memory")


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    in_memory = bool(_WAL_UNSUPPORTED.search(str(engine.url)))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take
        # over so that BEGIN is emitted by the "begin" hook below.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("modelhost_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def insert_for(session: Session, table: type[Any]) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike), on the
    Core table: an ORM-enabled bulk insert costs about 10 µs more per row."""
    core = table.__table__
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(core)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(core)
