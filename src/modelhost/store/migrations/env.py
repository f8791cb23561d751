"""Alembic environment: always driven programmatically by ``Database.upgrade``."""

from __future__ import annotations

from alembic import context

from modelhost.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded: migrations run only through Database
    raise RuntimeError("run migrations with 'modelhost db upgrade'")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
context.run_migrations()
