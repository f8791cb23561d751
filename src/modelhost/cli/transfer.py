"""Moving a model between registries: ``modelhost export`` and ``modelhost import``."""

from __future__ import annotations

from pathlib import Path

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit


@app.command("export")
def export(name: str,
           output: Path = typer.Option(..., "-o", "--output", help="The new archive "
                                       "(a .tar file; never overwritten)."),
           versions: str | None = typer.Option(None, "--versions", help="Comma-separated "
                                               "versions; default: all."),
           as_json: bool = JSON_OPTION) -> None:
    """Write a model's versions (metadata, artifacts, reference profiles) to a portable
    archive that `modelhost import` reads into another registry."""
    chosen = [v.strip() for v in versions.split(",") if v.strip()] if versions else None
    done = STATE.client().registry.export(name, output, chosen)
    emit(done.to_dict(), as_json=as_json,
         table=f"Exported {name} {', '.join(done.versions)} to {done.path} "
               f"({done.blobs} blobs, {done.bytes:,} bytes)")


@app.command("import")
def import_(archive: Path = typer.Argument(..., help="An archive of `modelhost export`."),
            as_json: bool = JSON_OPTION) -> None:
    """Recreate an exported model's versions in this registry, with the same numbers
    and hashes; checked whole before anything is written."""
    done = STATE.client().registry.import_archive(archive)
    parts = []
    if done.imported:
        parts.append(f"imported {', '.join(done.imported)}")
    if done.unchanged:
        parts.append(f"already here: {', '.join(done.unchanged)}")
    emit(done.to_dict(), as_json=as_json, table=f"{done.model}: " + "; ".join(parts))
