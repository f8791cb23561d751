"""``POST /v1/models/{name}/versions``: register a version from an uploaded model.

The body is ``multipart/form-data`` with either one archive (``.tar.gz``, ``.tgz``,
``.tar``, ``.tar.bz2``, ``.tar.xz``, ``.zip``) of a model folder, one model file
(``model.onnx``, ``model.skops``, an MLflow ``MLmodel`` folder needs the archive), or
several files whose filenames are their paths inside the model folder. Optional fields:
``flavor``, ``version``, ``force``, ``description``, ``input_example`` (JSON records),
``git_commit`` (the uploader's commit, for the lineage), ``feature_service`` (the feature
service it was trained with, of the latest definitions).

Uploads are unpacked by :mod:`modelhost.registry.uploads` (paths, links, sizes, counts
checked) into a private temporary folder, registered through the same
:meth:`Registry.register <modelhost.registry.Registry.register>` the CLI uses, and
removed. Pickle-based files load only if the *server* was started with the trust flag;
a request cannot ask for it.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from fastapi import FastAPI, Request
from starlette.datastructures import UploadFile

from modelhost.errors import InvalidInputError, UnsupportedMediaTypeError
from modelhost.registry import Registry
from modelhost.registry.uploads import UploadLimits, is_archive, unpack_archive, write_files

_FIELDS = frozenset({"file", "flavor", "version", "force", "description", "input_example",
                     "git_commit", "feature_service"})
_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def install(api: FastAPI, registry: Registry, limits: UploadLimits) -> None:
    @api.post("/v1/models/{name}/versions", tags=["management"], status_code=201,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {
                      "type": "object", "required": ["file"],
                      "properties": {
                          "file": {"type": "array",
                                   "items": {"type": "string", "format": "binary"}},
                          "flavor": {"type": "string"}, "version": {"type": "string"},
                          "force": {"type": "boolean"}, "description": {"type": "string"},
                          "feature_service": {"type": "string",
                                              "description": "the feature service the "
                                                             "model was trained with"},
                          "git_commit": {"type": "string",
                                         "description": "the commit the model was built "
                                                        "from (lineage)"},
                          "input_example": {"type": "string",
                                            "description": "JSON list of records"}}}}}}})
    async def upload_version(name: str, request: Request) -> dict[str, Any]:
        """Register a new version from an uploaded archive, file or folder."""
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise UnsupportedMediaTypeError(content_type.split(";")[0] or "none",
                                            ["multipart/form-data"])
        async with request.form(max_files=limits.max_files, max_fields=20) as form:
            unknown = set(form.keys()) - _FIELDS
            if unknown:
                raise InvalidInputError(f"unexpected field(s) {', '.join(sorted(unknown))}")
            files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                raise InvalidInputError("attach the model as 'file' (an archive, a model "
                                        "file, or the files of its folder)")
            options = _options(form)
            parts = [(f.filename or "", f.file) for f in files]
            mv = await asyncio.to_thread(_register, registry, name, parts, options, limits)
        data: dict[str, Any] = mv.to_dict()
        return data


def _field(form: Any, key: str) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"'{key}' must be a text field")
    return value


def _options(form: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in ("flavor", "version", "description", "feature_service"):
        value = _field(form, key)
        if value is not None:
            options[key] = value
    commit = _field(form, "git_commit")
    if commit is not None:
        if not _COMMIT.fullmatch(commit):
            raise InvalidInputError("'git_commit' must be a full commit hash (40 or 64 "
                                    "lowercase hex digits)")
        options["git_commit"] = commit
    force = _field(form, "force")
    if force is not None:
        if force.lower() not in ("true", "false", "1", "0"):
            raise InvalidInputError("'force' must be true or false")
        options["force"] = force.lower() in ("true", "1")
    example = _field(form, "input_example")
    if example is not None:
        try:
            records = orjson.loads(example)  # bounded nesting, unlike json.loads
        except orjson.JSONDecodeError:
            raise InvalidInputError("'input_example' must be a JSON list of records") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidInputError("'input_example' must be a JSON list of records")
        import pandas as pd

        options["input_example"] = pd.DataFrame.from_records(records)
    return options


def _register(registry: Registry, name: str, parts: Sequence[tuple[str, IO[bytes]]],
              options: dict[str, Any], limits: UploadLimits) -> Any:
    with tempfile.TemporaryDirectory(prefix="modelhost-upload-") as tmp:
        root = Path(tmp)
        if len(parts) == 1 and is_archive(parts[0][0]):
            archive = write_files([("upload.bin", parts[0][1])], root / "raw", limits=limits)
            path = unpack_archive(archive / "upload.bin", root / "model", limits=limits)
        else:
            path = write_files(parts, root / "model", limits=limits)
        files = [p for p in path.rglob("*") if p.is_file()]
        if len(files) == 1:  # one model file, perhaps inside a folder: register the file
            path = files[0]
        # The lineage's commit is the uploader's (a field), never the one the server
        # happens to run in: the code folder is this private one, outside any checkout.
        return registry.register(path=path, name=name, code_dir=root, **options)
