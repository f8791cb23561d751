"""Tracking commands: runs and datasets (versions, validation against a schema, diffs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import (
    EXIT_USER_ERROR,
    JSON_OPTION,
    STATE,
    app,
    emit,
    make_table,
    out,
    sub_app,
)
from modelhost.errors import ConflictError, FileNotFoundInputError, InvalidInputError

if TYPE_CHECKING:
    from rich.table import Table

    from modelhost.tracking import ColumnDiff, DatasetDiff

runs_app = sub_app("Tracked training runs.")
data_app = sub_app("Versioned datasets.")
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


@data_app.command("validate")
def data_validate(
    source: str = typer.Argument(..., metavar="SOURCE",
                                 help="A CSV/Parquet file or folder, or a dataset NAME[:VERSION]."),
    schema: Path = typer.Option(..., "--schema", "-s",
                                help="The YAML schema (write one with 'data infer-schema')."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check data against a schema; exit 1 listing every violated check with examples."""
    from modelhost.tracking import DataSchema, validate_frame

    contract = DataSchema.load(schema)
    report = validate_frame(_load_source(source), contract)
    if as_json:
        emit({"source": source, **report.to_dict()}, as_json=True)
    else:
        _print_text(report.summary())
    if not report.ok:
        raise typer.Exit(EXIT_USER_ERROR)


@data_app.command("infer-schema")
def data_infer_schema(
    source: str = typer.Argument(..., metavar="SOURCE",
                                 help="A CSV/Parquet file or folder, or a dataset NAME[:VERSION]."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the YAML here (default: print it)."),
    categorical_max: int = typer.Option(
        20, "--categorical-max", min=0,
        help="String columns with at most this many distinct values get them as 'allowed'."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a schema the data satisfies: a starting point to edit for 'data validate'."""
    from modelhost.tracking import infer_schema

    schema = infer_schema(_load_source(source), categorical_max=categorical_max)
    if output is None:
        if as_json:
            emit(schema.to_dict(), as_json=True)
        else:
            _print_text(schema.to_yaml().rstrip("\n"))
        return
    if output.exists() and not force:
        raise ConflictError(f"{output.name} already exists; pass --force to overwrite it")
    schema.save(output)
    if as_json:
        emit({"output": str(output), "schema": schema.to_dict()}, as_json=True)
    else:
        _print_text(f"Wrote a schema of {len(schema.columns)} columns to {output}")


@data_app.command("diff")
def data_diff(
    first: str = typer.Argument(..., metavar="NAME", help="The dataset (or NAME:A)."),
    second: str = typer.Argument(..., metavar="A", help="The first version (or NAME:B)."),
    third: str | None = typer.Argument(None, metavar="[B]", help="The second version."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare two dataset versions: columns added, removed or retyped, row count, and
    per-column shifts (mean in standard deviations, null rate, categories, PSI).

    Use 'data diff NAME A B' or 'data diff NAME:A NAME:B'.
    """
    from modelhost.tracking import diff_datasets

    if third is None:
        (name_a, version_a), (name_b, version_b) = _versioned(first), _versioned(second)
    else:
        name_a = name_b = first
        version_a, version_b = _version_number(second), _version_number(third)
    datasets = STATE.client().datasets
    diff = diff_datasets(datasets.get(name_a, version_a), datasets.get(name_b, version_b))
    if as_json:
        emit(diff.to_dict(), as_json=True)
        return
    lines = diff.summary().splitlines()
    # The head of the summary (verdict, rows, schema changes); the columns go in a table.
    _print_text("\n".join(ln for ln in lines if not ln.startswith(("-", "distribution ",
                                                                   "no shift "))))
    if diff.columns:
        out.print(_diff_table(diff))


def _diff_table(diff: DatasetDiff) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table("COLUMN", "NULL RATE", "MEAN", "SHIFT (SD)", "PSI", "CHANGE",
                  box=None, header_style="bold")
    for col in diff.columns:
        table.add_row(*(Text(cell) for cell in (
            col.name, _pair(col.null_rate_a, col.null_rate_b, "{:.1%}"),
            _pair(col.mean_a, col.mean_b, "{:.4g}"),
            "" if col.mean_shift is None else f"{col.mean_shift:+.2f}",
            "" if col.psi is None else f"{col.psi:.3f}", _change(col))),
            style="yellow" if col.shifted else None)
    return table


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    if a is None or b is None:
        return ""
    return fmt.format(a) if fmt.format(a) == fmt.format(b) else \
        f"{fmt.format(a)} -> {fmt.format(b)}"


def _change(col: ColumnDiff) -> str:
    notes = [f"{label}: {', '.join(values[:3])}{', ...' if len(values) > 3 else ''}"
             for label, values in (("new", col.new_values), ("gone", col.vanished_values))
             if values]
    return "; ".join(notes) or ("shifted" if col.shifted else "-")


def _load_source(source: str) -> Any:
    """The table at a file or folder path, or of a registered dataset NAME[:VERSION]."""
    from modelhost.tracking import read_frame, read_version

    path = Path(source)
    if path.exists():
        return read_frame(path)
    looks_like_path = any(sep in source for sep in ("/", "\\")) or \
        path.suffix.lower() in (".csv", ".parquet", ".pq")
    if looks_like_path:
        raise FileNotFoundInputError(source)
    name, version = _dataset_ref(source)
    datasets = STATE.client().datasets
    return read_version(datasets, datasets.get(name, version))


def _dataset_ref(text: str) -> tuple[str, int | None]:
    """``NAME``, ``NAME:VERSION`` or ``NAME@VERSION``."""
    for sep in (":", "@"):
        if sep in text:
            name, _, version = text.rpartition(sep)
            return name, _version_number(version)
    return text, None


def _versioned(text: str) -> tuple[str, int]:
    name, version = _dataset_ref(text)
    if version is None:
        raise InvalidInputError(f"{text!r} names no version; use NAME:VERSION (e.g. "
                                f"{text}:1), or give NAME A B")
    return name, version


def _version_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"invalid dataset version {text!r}: expected a whole "
                                "number from 1, e.g. 2")
    return int(text)


def _print_text(text: str) -> None:
    out.print(text, markup=False, highlight=False, emoji=False)
