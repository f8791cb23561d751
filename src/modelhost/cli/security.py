"""``modelhost keys ...`` and ``modelhost audit ...``."""

from __future__ import annotations

import datetime as dt

import typer

from modelhost._utils import parse_duration, utcnow
from modelhost.cli._app import (
    EXIT_USER_ERROR,
    JSON_OPTION,
    STATE,
    app,
    emit,
    err,
    make_table,
    out,
    sub_app,
)

keys_app = sub_app("API keys (shown once, stored hashed).")
audit_app = sub_app("The hash-chained audit log.")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")



@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="What the key is for, e.g. ci-deployer."),
    role: str = typer.Option(..., "--role", help="admin, deployer, predictor or viewer."),
    models: str | None = typer.Option(None, "--models",
                                      help="Predictor keys: comma-separated models."),
    expires_in: str | None = typer.Option(None, "--expires-in", help="e.g. 30d, 12h."),
    rate_limit: float | None = typer.Option(None, "--rate-limit",
                                            help="Requests per second for this key."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    from modelhost._actor import current_actor

    expires = utcnow() + parse_duration(expires_in) if expires_in else None
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    created = STATE.client().keys.create(name=name, role=role, models=names,
                                         expires_at=expires, rate_limit=rate_limit,
                                         created_by=current_actor().name)
    key = created.key
    emit({**key.to_dict(), "key": created.secret}, as_json=as_json,
         table=f"Created key {key.id} ({key.name}, {key.role}"
               + (f", models {', '.join(key.models)}" if key.models else "")
               + (f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "")
               + ")")
    if not as_json:
        out.print(created.secret, highlight=False)
        err.print("Store it now: it is shown only this once.")


@keys_app.command("list")
def keys_list(include_revoked: bool = typer.Option(False, "--all",
                                                   help="Include revoked keys."),
              as_json: bool = JSON_OPTION) -> None:
    """List keys (never their secrets)."""
    keys = STATE.client().keys.list(include_revoked=include_revoked)

    def when(value: dt.datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    emit([k.to_dict() for k in keys], as_json=as_json, table=make_table(
        "ID", "NAME", "ROLE", "MODELS", "CREATED", "EXPIRES", "LAST USED", "REVOKED",
        rows=[(k.id, k.name, k.role, ",".join(k.models) if k.models else "*",
               when(k.created_at), when(k.expires_at), when(k.last_used_at),
               when(k.revoked_at)) for k in keys]) if keys else "No keys.")


@keys_app.command("revoke")
def keys_revoke(key_id: str, as_json: bool = JSON_OPTION) -> None:
    """Revoke a key (servers stop accepting it within seconds)."""
    key = STATE.client().keys.revoke(key_id)
    emit(key.to_dict(), as_json=as_json, table=f"Revoked key {key.id} ({key.name})")


@audit_app.command("list")
def audit_list(limit: int = typer.Option(50, "--limit", min=1, max=10_000),
               action: str | None = typer.Option(None, "--action"),
               target: str | None = typer.Option(None, "--target"),
               actor: str | None = typer.Option(None, "--actor"),
               as_json: bool = JSON_OPTION) -> None:
    """Newest entries first."""
    entries = STATE.client().audit.list(limit=limit, action=action, target=target,
                                        actor=actor)
    emit([e.to_dict() for e in entries], as_json=as_json, table=make_table(
        "SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "BEFORE", "AFTER",
        rows=[(e.seq, e.at.strftime("%Y-%m-%d %H:%M:%S"), _printable(e.actor), e.action,
               _printable(e.target), _short(e.before), _short(e.after)) for e in entries])
         if entries else "The audit log is empty.")


def _printable(text: str) -> str:
    """Control characters (a newline in a hostile path) shown escaped, one entry a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={v}" for k, v in value.items())
    else:
        text = str(value)
    text = _printable(text)
    return text if len(text) <= 60 else text[:57] + "..."


@audit_app.command("verify")
def audit_verify(as_json: bool = JSON_OPTION) -> None:
    """Check the hash chain; exit 1 if an entry was changed, removed or reordered."""
    result = STATE.client().audit.verify()
    emit(result.to_dict(), as_json=as_json,
         table=(f"OK: {result.entries} entries, head {result.head}" if result.ok
                else f"TAMPERED: {result.problem} ({result.entries} entries verified "
                     "before it)"))
    if not result.ok:
        raise typer.Exit(EXIT_USER_ERROR)
