"""Maintenance commands: the database (upgrade, backup), the artifact store (gc, keys)."""

from __future__ import annotations

from pathlib import Path

import typer

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


@db_app.command("backup")
def backup(path: Path = typer.Argument(..., help="The new file to write (never "
                                       "overwritten)."),
           as_json: bool = JSON_OPTION) -> None:
    """Copy the SQLite metadata database to PATH, consistent while servers run (the
    artifacts are files: copy their folder or bucket too). PostgreSQL: use pg_dump."""
    from modelhost.store import Database
    from modelhost.store.backup import backup_sqlite

    settings = STATE.settings()
    db = Database(settings.resolved_db_url, busy_timeout_s=settings.db_busy_timeout_s,
                  connect_timeout_s=settings.db_connect_timeout_s)
    try:
        done = backup_sqlite(db, path)
    finally:
        db.dispose()
    emit(done.to_dict(), as_json=as_json,
         table=f"Backed up {done.models} model(s), {done.versions} version(s) to "
               f"{done.path} ({done.bytes:,} bytes, schema revision {done.revision})")


@app.command("gc")
def gc(grace: str = typer.Option("24h", "--grace", help="Keep blobs younger than this "
                                 "(a write in flight): 30m, 24h, 7d."),
       dry_run: bool = typer.Option(False, "--dry-run", help="List, remove nothing."),
       as_json: bool = JSON_OPTION) -> None:
    """Remove artifact blobs that no version, dataset or run refers to any more and that
    are older than the grace period."""
    from modelhost._utils import parse_duration
    from modelhost.artifacts.gc import collect_garbage

    keep = parse_duration(grace)
    client = STATE.client()
    done = collect_garbage(client.artifacts, client.artifacts_in_use, grace=keep,
                           dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    emit(done.to_dict(), as_json=as_json,
         table=f"{done.stored} blob(s) stored: {done.in_use} in use, {done.young} younger "
               f"than {grace}, {verb} {len(done.removed)}")


artifacts_app = sub_app("Artifact store maintenance: encryption keys.")
app.add_typer(artifacts_app, name="artifacts")


@artifacts_app.command("new-key")
def new_key() -> None:
    """Print a new encryption key (32 random bytes, URL-safe base64) for
    MODELHOST_ENCRYPTION_KEY. Keep it safe: artifacts sealed with it need it."""
    from modelhost.artifacts.encryption import new_key as make
    from modelhost.cli._app import out

    out.print(make(), markup=False, highlight=False, soft_wrap=True)


@artifacts_app.command("rotate-key")
def rotate_key(as_json: bool = JSON_OPTION) -> None:
    """Seal every artifact with MODELHOST_ENCRYPTION_KEY: those sealed with a key of
    MODELHOST_ENCRYPTION_OLD_KEYS and those stored unencrypted. Servers keep serving."""
    from modelhost.artifacts.encryption import EncryptedArtifactStore
    from modelhost.errors import InvalidInputError

    store = STATE.client().artifacts
    if not isinstance(store, EncryptedArtifactStore):
        raise InvalidInputError("set MODELHOST_ENCRYPTION_KEY to the key to seal the "
                                "artifacts with (and MODELHOST_ENCRYPTION_OLD_KEYS to the "
                                "earlier ones)")
    done = store.rotate()
    emit(done.to_dict(), as_json=as_json,
         table=f"Sealed {done.sealed} blob(s) with the current key; {done.current} "
               "already were")
