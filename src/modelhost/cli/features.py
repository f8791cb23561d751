"""``modelhost features apply|list|show``: the feature definitions and their versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, make_table, out, sub_app

if TYPE_CHECKING:
    from modelhost.features import FeatureView

features_app = sub_app("Feature definitions: entities, feature views, feature services.")
app.add_typer(features_app, name="features")


@features_app.command("apply")
def apply(path: Path = typer.Argument(..., help="A YAML file of entities, feature_views "
                                      "and feature_services."),
          as_json: bool = JSON_OPTION) -> None:
    """Check the definitions as a whole and store them as a new version (nothing
    changes when they are those of the latest version)."""
    applied = STATE.client().features.apply(path)
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
        (v.name, ",".join(v.entities), len(v.schema), _ttl(v), v.source.path)
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
