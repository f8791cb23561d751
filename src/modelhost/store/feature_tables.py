"""Reading a feature view's source table from the offline database (PostgreSQL, or any
database SQLAlchemy reaches). The table and column names come from the definitions and
are quoted as identifiers by SQLAlchemy, never pasted into SQL text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import column, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError

from modelhost.errors import InvalidInputError
from modelhost.store.database import create_engine_for, translate_operational

_WHAT = "the offline database"


class MissingColumnsError(InvalidInputError):
    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__(f"no column(s) {', '.join(map(repr, columns))}")
        self.columns = list(columns)


def read_table(url: str, name: str, columns: Sequence[str] | None = None) -> Any:
    """The ``columns`` (all by default) of table ``name`` (``schema.name`` allowed) as a
    DataFrame.

    Raises InvalidInputError (no such table), MissingColumnsError, StoreUnavailableError
    (the database cannot be reached)."""
    import pandas as pd

    schema, _, bare = name.rpartition(".")
    engine = create_engine_for(url, busy_timeout_s=30.0, connect_timeout_s=10.0,
                               setting="MODELHOST_FEATURES_OFFLINE_DB", what=_WHAT)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            if not found.has_table(bare, schema=schema or None):
                raise InvalidInputError(f"no table {name!r} in the offline database")
            present = [c["name"] for c in found.get_columns(bare, schema=schema or None)]
            columns = present if columns is None else columns
            missing = [c for c in columns if c not in present]
            if missing:
                raise MissingColumnsError(missing)
            source = table(bare, *(column(c) for c in columns), schema=schema or None)
            result = conn.execute(select(*source.columns))
            return pd.DataFrame(result.fetchall(), columns=list(columns))
    except SQLAlchemyError as exc:
        raise translate_operational(exc, _WHAT) from None
    finally:
        engine.dispose()
