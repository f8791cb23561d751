"""``modelhost batch``: score a data set on Dask (a local cluster, or yours)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from modelhost.cli._app import JSON_OPTION, STATE, app, emit
from modelhost.errors import ConflictError, InvalidInputError

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
    scheduler: str | None = typer.Option(None, "--scheduler", help="Address of a running "
                                  "dask.distributed scheduler (tcp://host:8786); a local "
                                  "cluster otherwise."),
    workers: int = typer.Option(2, "--workers", min=1, max=256,
                                help="Worker processes of the local cluster."),
    partition_rows: int = typer.Option(100_000, "--partition-rows", min=1,
                                       help="Rows per model call (and, for CSV, about "
                                            "per partition)."),
    rejects: str | None = typer.Option(None, "--rejects", help="Where rows the signature "
                                "refuses go, with the reason (default: OUTPUT-rejects)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an existing output."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score a data set with a registered version on Dask; writes Parquet with the input
    columns, prediction, probability_<class> and model_version, and the refused rows
    apart. With --server, the data (a local file) goes to the server as a prediction
    job, and its result is written here with the same columns."""
    rejects_uri = rejects or output.rstrip("/") + "-rejects"
    if STATE.server is not None:
        if scheduler is not None:
            raise InvalidInputError("--scheduler is for a batch run here; with --server, "
                                    "the server scores the data as a job")
        _batch_on_server(name, input, output, rejects_uri, version=version,
                         overwrite=overwrite, as_json=as_json)
        return
    from modelhost.batch.dask_scoring import package, score

    client = STATE.client()
    mv = client.registry.get_version(name, version)
    with tempfile.TemporaryDirectory(prefix="modelhost-batch-") as tmp:
        folder = client.artifacts.get_tree(mv.artifact_digest, Path(tmp) / "model")
        pkg = package(mv, folder, trust_pickle=client.settings.trust_pickle)
        source = _dataset_folder(client, input, Path(tmp) / "data")
        summary = score(pkg, input_uri=source, output_uri=output, rejects_uri=rejects_uri,
                        scheduler=scheduler, workers=workers,
                        partition_rows=partition_rows, overwrite=overwrite,
                        storage_options=client.settings.artifact_storage_options,
                        progress=None if as_json else _progress)
    data = summary.to_dict()
    emit(data, as_json=as_json, table=(
        f"Scored {summary.rows:,} rows with {name} {mv.version} in {summary.seconds:.1f} s "
        f"({summary.rows_per_s:.1f} rows/s) -> {summary.output}"
        + (f"\n{summary.rejected:,} rows refused -> {summary.rejects}" if summary.rejected
           else "\n0 rows refused")))


def _batch_on_server(name: str, input: str, output: str, rejects_uri: str, *,
                     version: str, overwrite: bool, as_json: bool) -> None:
    """Score a local file on the server as a job; write its result as a Dask run
    would: Parquet folders of the scored rows and of the refused rows."""
    import time

    import pandas as pd

    from modelhost.batch.job_frames import json_lines, refused_frame, scored_frame
    from modelhost.batch.jobs import file_format
    from modelhost.cli.jobs import job_service, wait_for

    source = Path(input)
    fmt = file_format(source.name) if not input.startswith("dataset://") else None
    if fmt is None or not source.is_file():
        raise InvalidInputError("with --server, --input is a local .csv or .parquet file "
                                "(it is sent with the job); for a dataset on the server, "
                                "use 'modelhost jobs submit NAME --input dataset://...'")
    for target in (Path(output), Path(rejects_uri)):
        if target.exists() and not overwrite:
            raise ConflictError(f"{target} exists; pass --overwrite to replace it")
    started = time.perf_counter()
    jobs = job_service()
    job = jobs.submit(name, version=version, file=source)
    job = wait_for(jobs, job, timeout_s=24 * 3600.0)
    frame = pd.read_csv(source) if fmt == "csv" else pd.read_parquet(source)
    # A job's result gives the probabilities in the model's class order, not the
    # classes' names: the columns are probability_0, probability_1, ...
    scored = scored_frame(frame, json_lines(jobs.result(job["job_id"])), job["version"])
    refused = (refused_frame(frame, json_lines(jobs.result(job["job_id"], rejects=True)))
               if job["rejected"] else None)
    _write_parquet(scored, Path(output))
    if refused is not None:
        _write_parquet(refused, Path(rejects_uri))
    seconds = time.perf_counter() - started
    rows = int(job["rows"])
    data = {"model": name, "version": job["version"], "rows": rows,
            "rejected": int(job["rejected"]), "seconds": seconds,
            "rows_per_s": rows / seconds if seconds > 0 else 0.0, "output": output,
            "rejects": rejects_uri if refused is not None else None,
            "job_id": job["job_id"]}
    emit(data, as_json=as_json, table=(
        f"Scored {rows:,} rows with {name} {job['version']} on the server (job "
        f"{job['job_id']}) in {seconds:.1f} s -> {output}"
        + (f"\n{data['rejected']:,} rows refused -> {rejects_uri}" if refused is not None
           else "\n0 rows refused")))


def _write_parquet(frame: object, folder: Path) -> None:
    """``frame`` as ``folder/part.0.parquet`` (the layout of a Dask run), replacing
    the folder only once the new one is whole."""
    import shutil

    part = folder.with_name(f".{folder.name}.part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    frame.to_parquet(part / "part.0.parquet", index=False)  # type: ignore[attr-defined]
    if folder.exists():
        shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
    part.rename(folder)


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
