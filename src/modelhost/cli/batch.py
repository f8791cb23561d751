"""``modelhost batch``: score a data set on Dask (a local cluster, or yours)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit

if TYPE_CHECKING:
    from modelhost.client import Client


@app.command("batch")
def batch(
    name: str,
    input: str = typer.Option(..., "--input", help="CSV or Parquet: a file, a folder, a "
                              "glob, an s3:// URL, or dataset://NAME[/VERSION]."),
    output: str = typer.Option(..., "--output", help="Where to write the Parquet output "
                               "(a folder or an s3:// URL)."),
    version: str = typer.Option("@production", "--version",
                                help="Version, alias, latest or @stage."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a running "
                                  "dask.distributed scheduler (tcp://host:8786); a local "
                                  "cluster otherwise."),
    workers: int = typer.Option(2, "--workers", min=1, max=256,
                                help="Worker processes of the local cluster."),
    partition_rows: int = typer.Option(100_000, "--partition-rows", min=1,
                                       help="Rows per model call (and, for CSV, about "
                                            "per partition)."),
    rejects: str = typer.Option(None, "--rejects", help="Where rows the signature "
                                "refuses go, with the reason (default: OUTPUT-rejects)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing output."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a data set with a registered version on Dask; writes Parquet with the input
    columns, prediction, probability_<class> and model_version, and the refused rows
    apart."""
    from modelhost.batch.dask_scoring import package, score

    client = STATE.client()
    mv = client.registry.get_version(name, version)
    rejects_uri = rejects or output.rstrip("/") + "-rejects"
    with tempfile.TemporaryDirectory(prefix="modelhost-batch-") as tmp:
        folder = client.artifacts.get_tree(mv.artifact_digest, Path(tmp) / "model")
        pkg = package(mv, folder, trust_pickle=client.settings.trust_pickle)
        source = _dataset_folder(client, input, Path(tmp) / "data")
        summary = score(pkg, input_uri=source, output_uri=output, rejects_uri=rejects_uri,
                        scheduler=scheduler, workers=workers,
                        partition_rows=partition_rows, overwrite=overwrite,
                        progress=None if as_json else _progress)
    data = summary.to_dict()
    emit(data, as_json=as_json, table=(
        f"Scored {summary.rows:,} rows with {name} {mv.version} in {summary.seconds:.1f} s "
        f"({summary.rows_per_s:.1f} rows/s) -> {summary.output}"
        + (f"\n{summary.rejected:,} rows refused -> {summary.rejects}" if summary.rejected
           else "\n0 rows refused")))


def _dataset_folder(client: Client, uri: str, dest: Path) -> str:
    """A dataset version's files, materialized (verified) for the workers; other
    inputs as they are."""
    if not uri.startswith("dataset://"):
        return uri
    from modelhost.batch.rows import dataset_uri

    name, number = dataset_uri(uri)
    dv = client.datasets.get(name, number)
    folder = client.datasets.materialize(dv, dest)
    return str(folder / "**" / "*.csv") if dv.format == "csv" else str(folder)


def _progress(futures: object) -> None:
    from dask.distributed import progress

    progress(futures)  # type: ignore[no-untyped-call]
