"""A server's asynchronous prediction jobs (PRODUCT.md §3.9): submit rows, a CSV or
Parquet file (uploaded) or a dataset version; read a job, list them, stream its result
and rejects as JSON lines. Jobs come back in the routes' JSON shape (``job_id``,
``status``, ``rows``, ``rejected``, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelhost.errors import InvalidInputError
from modelhost.remote.http import Http, path


class RemoteJobs:
    def __init__(self, http: Http) -> None:
        self._http = http

    def submit(self, model: str, *, version: str | None = None, inputs: Any = None,
               file: Path | str | None = None, uri: str | None = None) -> dict[str, Any]:
        """Queue a job on exactly one of ``inputs`` (records or a dict of columns),
        ``file`` (a local .csv or .parquet file, uploaded) or ``uri``
        (``dataset://NAME[/VERSION]`` on the server); pinned to ``version`` when
        given, to production otherwise."""
        if sum(x is not None for x in (inputs, file, uri)) != 1:
            raise InvalidInputError("give a job exactly one input: rows, a file or a "
                                    "dataset URI")
        route = path("v1", "models", model, "jobs")
        headers = {"X-Model-Version": version} if version else None
        if file is not None:
            source = Path(file)
            if not source.is_file():
                raise InvalidInputError(f"no input file {source.name!r}")
            with source.open("rb") as data:
                job: dict[str, Any] = self._http.call(
                    "POST", route, headers=headers,
                    files=[("file", (source.name, data, "application/octet-stream"))])
            return job
        if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):
            inputs = inputs.to_dict(orient="records")
        body = {"input_uri": uri} if uri is not None else {"inputs": inputs}
        queued: dict[str, Any] = self._http.call("POST", route, json=body,
                                                 headers=headers)
        return queued

    def get(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._http.call("GET", path("v1", "jobs", job_id))
        return job

    def list(self, *, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if model is not None:
            params["model"] = model
        jobs: list[dict[str, Any]] = self._http.call("GET", "v1/jobs", params=params)["jobs"]
        return jobs

    def result(self, job_id: str, *, rejects: bool = False) -> Iterator[bytes]:
        """The predictions (or the refused rows), one JSON object per line."""
        return self._http.stream(path("v1", "jobs", job_id,
                                      "rejects" if rejects else "result"))
