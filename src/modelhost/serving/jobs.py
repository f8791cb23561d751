"""Asynchronous prediction jobs over HTTP (PRODUCT.md §3.9).

``POST /v1/models/{name}/jobs`` takes a predict body (``{"inputs": ...}``), a dataset
version (``{"input_uri": "dataset://NAME/VERSION"}``) or an uploaded CSV or Parquet file
(``multipart/form-data``, field ``file``), pinned to a version with ``X-Model-Version``
(production otherwise); it answers 202 once the job is stored. ``GET /v1/jobs/{id}``
says how it goes, ``/result`` streams the predictions as JSON lines, ``/rejects`` the
rows the signature refused with the reason. A ``predictor`` key sees its own jobs only;
a key that may read (viewer, deployer, admin) sees every job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile

from modelhost._actor import current_actor
from modelhost.batch import JobService
from modelhost.batch.jobs import file_format
from modelhost.entities import Job
from modelhost.errors import InvalidInputError, NotFoundError, UnsupportedMediaTypeError
from modelhost.store.jobs import JobNotFoundError

READS_SCOPE_KEY = "modelhost.reads"
"""Set by the server to whether the caller's key may read every job (not only its own)."""

_BODY_FIELDS = frozenset({"inputs", "input_uri"})


def install(api: FastAPI, service: JobService | None, *,
            wake: Callable[[], None] = lambda: None) -> None:
    def jobs() -> JobService:
        if service is None:
            raise NotFoundError("jobs are not available on this server")
        return service

    @api.post("/v1/models/{name}/jobs", tags=["jobs"], status_code=202, openapi_extra={
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "inputs": {"description": "Records or a dict of columns, as for predict."},
                "input_uri": {"type": "string",
                              "description": "dataset://NAME or dataset://NAME/VERSION"}}}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "A .csv or .parquet file"}}}}}}})
    async def submit(name: str, request: Request) -> JSONResponse:
        """Queue a prediction job; 202 with `job_id` once it is stored. 404 for an
        unknown model, version or dataset, 422 for a body that is none of the three
        inputs (nothing is queued then)."""
        ref = request.headers.get("x-model-version") or None
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            async with request.form(max_files=1, max_fields=1) as form:
                upload = form.get("file")
                if set(form.keys()) - {"file"} or not isinstance(upload, UploadFile):
                    raise InvalidInputError("attach the data as 'file' (a .csv or .parquet "
                                            "file), and nothing else")
                fmt = file_format(upload.filename or "")
                data = await upload.read()
            job = await asyncio.to_thread(jobs().submit_file, name, ref, data, fmt)
        elif content_type in ("application/json", ""):
            body = _json(await request.body())
            if "input_uri" in body:
                job = await asyncio.to_thread(jobs().submit_uri, name, ref,
                                              body["input_uri"])
            else:
                job = await asyncio.to_thread(jobs().submit_rows, name, ref,
                                              body.get("inputs"))
        else:
            raise UnsupportedMediaTypeError(content_type,
                                            ["application/json", "multipart/form-data"])
        wake()
        return JSONResponse(job.to_dict(), status_code=202)

    @api.get("/v1/jobs", tags=["jobs"])
    async def list_jobs(request: Request, model: str | None = None,
                        limit: int = 100) -> dict[str, Any]:
        """The newest jobs first: every job for a key that may read, its own jobs for a
        predictor key."""
        if not 1 <= limit <= 1000:
            raise InvalidInputError(f"'limit' must be from 1 to 1000, got {limit}")
        mine = None if _reads(request) else current_actor().name
        found = await asyncio.to_thread(jobs().list, submitted_by=mine, model=model,
                                        limit=limit)
        return {"jobs": [j.to_dict() for j in found]}

    @api.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def get_job(job_id: str, request: Request) -> dict[str, Any]:
        """The job: `status` (queued, running, succeeded, failed), the version it is
        pinned to, `rows` scored and `rejected`, `result_uri`, `error`."""
        return (await _visible(jobs(), job_id, request)).to_dict()

    @api.get("/v1/jobs/{job_id}/result", tags=["jobs"])
    async def job_result(job_id: str, request: Request) -> StreamingResponse:
        """The predictions, one JSON object per line: `row` (the input row's position),
        `prediction`, and `probabilities` when the model has them."""
        await _visible(jobs(), job_id, request)
        chunks = await asyncio.to_thread(lambda: list(jobs().result(job_id)))
        return StreamingResponse(iter(chunks), media_type="application/x-ndjson")

    @api.get("/v1/jobs/{job_id}/rejects", tags=["jobs"])
    async def job_rejects(job_id: str, request: Request) -> StreamingResponse:
        """The rows the signature refused, one JSON object per line: `row`, `reason`,
        `input`."""
        await _visible(jobs(), job_id, request)
        chunks = await asyncio.to_thread(lambda: list(jobs().result(job_id, rejects=True)))
        return StreamingResponse(iter(chunks), media_type="application/x-ndjson")


def _reads(request: Request) -> bool:
    return bool(request.scope.get(READS_SCOPE_KEY, True))


async def _visible(service: JobService, job_id: str, request: Request) -> Job:
    """The job, if the caller may see it; another's job is not found (as if it were
    not there: a predictor learns nothing of other keys' jobs)."""
    job = await asyncio.to_thread(service.get, job_id)
    if not _reads(request) and job.submitted_by != current_actor().name:
        raise JobNotFoundError(job_id)
    return job


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInputError("the body is not valid JSON") from None
    if not isinstance(body, dict) or not body or set(body) - _BODY_FIELDS \
            or len(body) != 1:
        raise InvalidInputError('send {"inputs": [...]} (records or a dict of columns) or '
                                '{"input_uri": "dataset://NAME/VERSION"}')
    return body
