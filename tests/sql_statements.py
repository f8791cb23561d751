"""Counting the SQL statements a block of code runs (query-count tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on ``engine`` inside the block (SQLite's BEGIN left out)."""
    seen: list[str] = []

    def listen(conn: object, cursor: object, sql: str, *args: object) -> None:
        if sql.strip().upper() != "BEGIN":
            seen.append(sql)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)
