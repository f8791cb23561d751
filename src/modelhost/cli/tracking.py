"""Tracking commands: runs and datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit, make_table, out

runs_app = typer.Typer(help="Tracked training runs.", no_args_is_help=True)
data_app = typer.Typer(help="Versioned datasets.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")


@runs_app.command("list")
def runs_list(experiment: str | None = typer.Option(None, "--experiment", "-e"),
              limit: int = typer.Option(50, "--limit", min=1, max=10_000),
              as_json: bool = JSON_OPTION) -> None:
    """List recent runs."""
    runs = STATE.client().tracking.list_runs(experiment, limit=limit)
    emit([r.to_dict() for r in runs], as_json=as_json, table=make_table(
        "RUN", "EXPERIMENT", "NAME", "STATUS", "STARTED", "METRICS",
        rows=[(r.run_id, r.experiment, r.name, r.status.value,
               r.start_time.strftime("%Y-%m-%d %H:%M"),
               " ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items())))
              for r in runs]) if runs else "No runs yet.")


@runs_app.command("show")
def runs_show(run_id: str, as_json: bool = JSON_OPTION) -> None:
    """Show one run: params, metrics, tags, artifacts, datasets."""
    run = STATE.client().tracking.get_run(run_id)
    emit(run.to_dict(), as_json=as_json)
    if not as_json:
        out.print(f"[bold]{run.run_id}[/bold]  {run.experiment}/{run.name}  "
                  f"{run.status.value}  git {run.git_commit or '-'}")
        for title, values in (("params", run.params), ("metrics", run.metrics),
                              ("tags", run.tags), ("artifacts", run.artifacts)):
            if values:
                out.print(make_table(title.upper(), "VALUE",
                                     rows=sorted((k, v) for k, v in values.items())))
        if run.datasets:
            out.print("datasets: " + ", ".join(run.datasets))


@data_app.command("add")
def data_add(path: Path, name: str = typer.Option(..., "--name"),
             as_json: bool = JSON_OPTION) -> None:
    """Version a CSV/Parquet file or folder (identical content is the same version)."""
    dv, created = STATE.client().datasets.add(path, name=name)
    emit({**dv.to_dict(), "created": created}, as_json=as_json,
         table=(f"Added {dv.ref}" if created else f"Unchanged: already {dv.ref}")
         + f" ({dv.n_rows} rows, {len(dv.schema)} columns, sha256:{dv.digest[:12]})")


@data_app.command("versions")
def data_versions(name: str, as_json: bool = JSON_OPTION) -> None:
    """List the versions of a dataset."""
    versions = STATE.client().datasets.versions(name)
    emit([v.to_dict() for v in versions], as_json=as_json, table=make_table(
        "VERSION", "FORMAT", "ROWS", "COLUMNS", "SHA256", "CREATED",
        rows=[(v.version, v.format, v.n_rows, len(v.schema), v.digest[:12],
               v.created_at.strftime("%Y-%m-%d %H:%M")) for v in versions]))
