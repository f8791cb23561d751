"""``modelhost jobs ...``: asynchronous prediction jobs (PRODUCT.md §3.9) on the local
store or, with ``--server``, on a server: submit a file or a dataset version, follow a
job, fetch its result and rejected rows as JSON lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from modelhost.cli._app import (
    EXIT_UNAVAILABLE,
    JSON_OPTION,
    STATE,
    app,
    emit,
    err,
    make_table,
    out,
    sub_app,
)

if TYPE_CHECKING:
    from modelhost.batch import JobService
    from modelhost.remote import RemoteJobs

jobs_app = sub_app("Asynchronous prediction jobs: submit, follow, fetch results.")
app.add_typer(jobs_app, name="jobs")

_POLL_S = (0.05, 1.0)  # first and longest pause between two looks at a job


class LocalJobs:
    """The local job service with the remote one's shape (jobs as the routes' JSON)."""

    def __init__(self, service: JobService) -> None:
        self._service = service

    def submit(self, model: str, *, version: str | None = None, inputs: Any = None,
               file: Path | str | None = None, uri: str | None = None) -> dict[str, Any]:
        from modelhost.batch.jobs import file_format

        if file is not None:
            source = Path(file)
            fmt = file_format(source.name)
            return self._service.submit_file(model, version, source.read_bytes(),
                                             fmt).to_dict()
        if uri is not None:
            return self._service.submit_uri(model, version, uri).to_dict()
        return self._service.submit_rows(model, version, inputs).to_dict()

    def get(self, job_id: str) -> dict[str, Any]:
        return self._service.get(job_id).to_dict()

    def list(self, *, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [j.to_dict() for j in self._service.list(model=model, limit=limit)]

    def result(self, job_id: str, *, rejects: bool = False) -> Iterator[bytes]:
        return self._service.result(job_id, rejects=rejects)


def job_service() -> LocalJobs | RemoteJobs:
    manager = STATE.manager()
    from modelhost.remote import RemoteClient

    return manager.jobs if isinstance(manager, RemoteClient) else LocalJobs(manager.jobs)


def submit_input(jobs: LocalJobs | RemoteJobs, name: str, source: str,
                 version: str | None) -> dict[str, Any]:
    """Queue a job on ``source``: ``dataset://...`` or a local .csv/.parquet file."""
    if source.startswith("dataset://"):
        return jobs.submit(name, version=version, uri=source)
    from modelhost.batch.jobs import file_format
    from modelhost.errors import InvalidInputError

    file_format(source)
    if not Path(source).is_file():
        raise InvalidInputError(f"no input file {Path(source).name!r}")
    return jobs.submit(name, version=version, file=source)


def wait_for(jobs: LocalJobs | RemoteJobs, job: dict[str, Any],
             timeout_s: float) -> dict[str, Any]:
    """The job once it is done; exit 5 when it is not within ``timeout_s``, and 1 when
    it failed (with its error)."""
    from modelhost.errors import ModelhostError

    deadline = time.monotonic() + timeout_s
    pause = _POLL_S[0]
    while job["status"] not in ("succeeded", "failed"):
        if time.monotonic() >= deadline:
            err.print(f"error: job {job['job_id']} is still {job['status']} after "
                      f"{timeout_s:g} s; follow it with 'modelhost jobs show "
                      f"{job['job_id']}' (a running 'modelhost serve' runs the jobs)",
                      markup=False, highlight=False)
            raise typer.Exit(EXIT_UNAVAILABLE)
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, _POLL_S[1])
        job = jobs.get(job["job_id"])
    if job["status"] == "failed":
        raise ModelhostError(f"job {job['job_id']} failed: {job['error']}")
    return job


def _line(job: dict[str, Any]) -> str:
    done = ""
    if job["status"] == "succeeded":
        done = f": {job['rows']:,} rows scored, {job['rejected']:,} refused"
    elif job["status"] == "failed":
        done = f": {job['error']}"
    return f"job {job['job_id']} ({job['model']} {job['version']}) {job['status']}{done}"


@jobs_app.command("submit")
def submit(
    name: str,
    input: str = typer.Option(..., "--input", help="A local .csv or .parquet file (sent "
                              "with the job), or dataset://NAME[/VERSION]."),
    version: str | None = typer.Option(None, "--version", help="Version, alias, latest "
                                       "or @stage (production when omitted)."),
    wait: bool = typer.Option(False, "--wait", help="Wait until the job is done."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the result "
                                       "(JSON lines) here once done; implies --wait."),
    timeout: float = typer.Option(600.0, "--timeout", min=0.1, help="Seconds to wait."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue a prediction job over a file or a dataset version; the job is pinned to
    the version resolved now."""
    jobs = job_service()
    job = submit_input(jobs, name, input, version)
    if wait or output is not None:
        job = wait_for(jobs, job, timeout)
        if output is not None:
            _write(jobs.result(job["job_id"]), output)
    emit(job, as_json=as_json, table=_line(job) if wait or output is not None
         else f"queued job {job['job_id']} ({job['model']} {job['version']})")


@jobs_app.command("list")
def list_jobs(model: str | None = typer.Option(None, "--model", help="Only this model's."),
              limit: int = typer.Option(20, "--limit", min=1, max=1000),
              as_json: bool = JSON_OPTION) -> None:
    """The newest jobs first."""
    found = job_service().list(model=model, limit=limit)
    emit(found, as_json=as_json, table=make_table(
        "JOB", "MODEL", "VERSION", "STATUS", "ROWS", "REFUSED", "CREATED",
        rows=[(j["job_id"], j["model"], j["version"], j["status"], j["rows"],
               j["rejected"], (j["created_at"] or "")[:19].replace("T", " "))
              for j in found]) if found else "No jobs yet.")


@jobs_app.command("show")
def show(job_id: str, as_json: bool = JSON_OPTION) -> None:
    """A job: its status, version, counts and error."""
    job = job_service().get(job_id)
    emit(job, as_json=as_json, table=_line(job))


@jobs_app.command("result")
def result(job_id: str,
           rejects: bool = typer.Option(False, "--rejects", help="The refused rows with "
                                        "their reason instead."),
           output: Path | None = typer.Option(None, "--output", "-o",
                                              help="Write to a file (standard output "
                                              "otherwise).")) -> None:
    """A finished job's predictions, one JSON object per line: row, prediction,
    probabilities."""
    chunks = job_service().result(job_id, rejects=rejects)
    if output is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    else:
        _write(chunks, output)
        out.print(f"Wrote {output}", markup=False, highlight=False)


def _write(chunks: Iterator[bytes], output: Path) -> None:
    """All of ``chunks`` into ``output``, or nothing: written aside, then renamed."""
    part = output.with_name(f".{output.name}.part")
    try:
        with part.open("wb") as file:
            for chunk in chunks:
                file.write(chunk)
        part.replace(output)
    finally:
        part.unlink(missing_ok=True)
