"""Database maintenance commands."""

from __future__ import annotations

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, sub_app

db_app = sub_app("Metadata database maintenance.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(as_json: bool = JSON_OPTION) -> None:
    """Apply pending migrations (serve and quickstart also do this at start)."""
    from modelhost.store import Database

    settings = STATE.settings()
    db = Database(settings.resolved_db_url, busy_timeout_s=settings.db_busy_timeout_s,
                  connect_timeout_s=settings.db_connect_timeout_s)
    try:
        before = db.current_revision()
        after = db.upgrade()
    finally:
        db.dispose()
    emit({"from": before, "to": after}, as_json=as_json,
         table=f"Database at revision {after}" + ("" if before == after
                                                  else f" (was {before or 'empty'})"))
