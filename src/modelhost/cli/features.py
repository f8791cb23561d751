"""``modelhost features apply|list|show``: the feature definitions and their versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, err, make_table, out, sub_app

if TYPE_CHECKING:
    from modelhost.features import FeatureView
    from modelhost.features.lookup import OnlineRow

features_app = sub_app("Feature definitions: entities, feature views, feature services.")
app.add_typer(features_app, name="features")


@features_app.command("apply")
def apply(path: Path = typer.Argument(..., help="A YAML file of entities, feature_views "
                                      "and feature_services, or a Feast repository."),
          as_json: bool = JSON_OPTION) -> None:
    """Check the definitions as a whole and store them as a new version (nothing
    changes when they are those of the latest version). A folder with a
    feature_store.yaml is read as a Feast repository (its files are read, never run)."""
    applied = STATE.client().features.apply(path)
    for line in applied.left_out:
        err.print(f"left out: {line}", markup=False, highlight=False)
    repo = applied.repo
    emit(applied.to_dict(), as_json=as_json, table=(
        f"Applied feature definitions version {applied.version}: "
        f"{len(repo.entities)} entities, {len(repo.views)} views, "
        f"{len(repo.services)} services" if applied.changed else
        f"Unchanged: the definitions are those of version {applied.version}"))


@features_app.command("list")
def list_features(version: int | None = typer.Option(None, "--version", min=1,
                                                     help="A version (the latest when "
                                                     "omitted)."),
                  as_json: bool = JSON_OPTION) -> None:
    """The feature views and services of the definitions."""
    from modelhost.features.definitions import repo_to_dict

    applied = STATE.client().features.current(version)
    repo = applied.repo
    if as_json:
        emit({"version": applied.version, **repo_to_dict(repo)}, as_json=True)
        return
    out.print(f"version {applied.version} (applied by {applied.applied_by}, "
              f"{applied.created_at:%Y-%m-%d %H:%M} UTC)", markup=False, highlight=False)
    out.print(make_table("VIEW", "ENTITIES", "FEATURES", "TTL", "SOURCE", rows=[
        (v.name, ",".join(v.entities), len(v.schema), _ttl(v),
         getattr(v.source, "path", None) or f"table {getattr(v.source, 'table', '')}")
        for v in repo.views.values()]))
    out.print(make_table("SERVICE", "FEATURES", rows=[
        (s.name, ", ".join(s.features)) for s in repo.services.values()]))


@features_app.command("show")
def show(name: str, version: int | None = typer.Option(None, "--version", min=1),
         as_json: bool = JSON_OPTION) -> None:
    """One feature view, feature service or entity, by name."""
    from modelhost.errors import NotFoundError
    from modelhost.features.definitions import repo_to_dict

    applied = STATE.client().features.current(version)
    whole = repo_to_dict(applied.repo)
    for kind in ("feature_views", "feature_services", "entities"):
        for entry in whole[kind]:
            if entry["name"] == name:
                found: dict[str, Any] = {"kind": kind[:-1], "version": applied.version,
                                         **entry}
                emit(found, as_json=as_json, table=_describe(found))
                return
    raise NotFoundError(f"no feature view, service or entity {name!r} in version "
                        f"{applied.version}")


def _ttl(view: FeatureView) -> str:
    return str(view.ttl) if view.ttl else "-"


def _describe(entry: dict[str, Any]) -> str:
    lines = [f"{entry['kind'].replace('_', ' ')} {entry['name']} (version "
             f"{entry['version']})"]
    for key, value in entry.items():
        if key not in ("kind", "name", "version") and value not in (None, "", []):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


@features_app.command("materialize")
def materialize(
        views: list[str] = typer.Option([], "--view", help="A feature view (repeat for "
                                        "more; every view when omitted)."),
        start: str | None = typer.Option(None, "--start", help="Event times after this "
                                         "(ISO 8601; default: where the view's last run "
                                         "ended, or its whole history)."),
        end: str | None = typer.Option(None, "--end", help="Event times up to this (ISO "
                                       "8601; default: now)."),
        as_json: bool = JSON_OPTION) -> None:
    """Load the latest value per entity key from each view's source into the online
    store. Incremental and idempotent: a rerun, or a run after an interrupted one,
    leaves the store as one run would."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    client = STATE.client()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  transient=True, console=out.real,
                  disable=as_json or not out.real.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(view: str, done: int, total: int) -> None:
            if view not in tasks:
                tasks[view] = bar.add_task(f"Materializing {view}", total=total)
            bar.update(tasks[view], completed=done)

        done = client.features.materialize(views=views, start=_moment(start, "--start"),
                                           end=_moment(end, "--end"), progress=progress)
    emit({"views": [m.to_dict() for m in done]}, as_json=as_json, table="\n".join(
        f"{m.view}: {m.keys} keys from {m.source_rows} source rows up to "
        f"{m.end:%Y-%m-%d %H:%M:%S} UTC in {m.seconds:.1f} s" for m in done))


@features_app.command("get")
def get(service: str = typer.Argument(..., help="A feature service."),
        entities: list[str] = typer.Option(..., "--entity", help="An entity's join keys, "
                                           "KEY=VALUE[,KEY=VALUE] (repeat for more)."),
        as_json: bool = JSON_OPTION) -> None:
    """The online values of a service's features for some entities, as serving reads
    them (missing and stale values shown)."""
    rows = [_entity(text) for text in entities]
    found = STATE.client().features.get_online(service, rows)
    if as_json:
        emit({"service": service, "rows": [{"entity": e, **r.to_dict()}
                                           for e, r in zip(rows, found, strict=True)]},
             as_json=True)
        return
    names = list(found[0].values) if found else []
    out.print(make_table(*(k.upper() for k in rows[0]), *names, "NOT FRESH", rows=[
        (*e.values(), *("-" if v is None else v for v in r.values.values()), _not_fresh(r))
        for e, r in zip(rows, found, strict=True)]))


def _not_fresh(row: OnlineRow) -> str:
    """The views whose values were missing or stale (the defaults stand in for them)."""
    said = []
    for kind, refs in (("missing", row.missing), ("stale", row.stale)):
        views = list(dict.fromkeys(ref.partition(":")[0] for ref in refs))
        if views:
            said.append(f"{kind}: {', '.join(views)}")
    return "; ".join(said) or "-"


def _entity(text: str) -> dict[str, Any]:
    from modelhost.errors import InvalidInputError

    entity: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--entity takes KEY=VALUE[,KEY=VALUE], got {text!r}")
        entity[key.strip()] = _number(value.strip())
    return entity


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _moment(text: str | None, option: str) -> Any:
    import datetime as dt

    from modelhost.errors import InvalidInputError

    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{option} takes an ISO 8601 time such as 2026-11-01 or "
                                f"2026-11-01T12:00:00+00:00, got {text[:40]!r}") from None
