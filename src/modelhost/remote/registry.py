"""The registry of a server (PRODUCT.md §3.4), with the names, arguments and objects of
the local :class:`~modelhost.registry.Registry`: ``list_models``, ``get_version``,
``register`` (an upload), ``transition``, ``set_alias``, ... A local model object cannot
be registered from here: a server registers files (save it with skops or ONNX first)."""

from __future__ import annotations

import datetime as dt
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from modelhost.entities import Model, ModelVersion, Stage, StageChange
from modelhost.errors import FileNotFoundInputError, InvalidInputError
from modelhost.remote.http import Http, path


class RemoteRegistry:
    def __init__(self, http: Http) -> None:
        self._http = http

    def list_models(self) -> list[Model]:
        return [Model.from_dict(m) for m in self._http.call("GET", "v1/models")]

    def get_model(self, name: str) -> Model:
        return Model.from_dict(self._http.call("GET", path("v1", "models", name)))

    def list_versions(self, name: str) -> list[ModelVersion]:
        return [ModelVersion.from_dict(v)
                for v in self._http.call("GET", path("v1", "models", name, "versions"))]

    def get_version(self, name: str, ref: str = "latest") -> ModelVersion:
        return ModelVersion.from_dict(
            self._http.call("GET", path("v1", "models", name, "versions", ref)))

    def register(self, model: object = None, *, name: str, path: Path | str | None = None,
                 flavor: str | None = None, version: str | None = None,
                 force: bool = False, description: str = "", input_example: Any = None,
                 trust_pickle: bool = False, optimize: bool = False,
                 feature_service: str | None = None) -> ModelVersion:
        """Upload the model file or folder at ``path`` as a new version of ``name``."""
        if model is not None or path is None:
            raise InvalidInputError("a server registers model files: save the model (with "
                                    "skops or as ONNX) and give its path")
        if trust_pickle:
            raise InvalidInputError("whether pickle-based files load is the server's "
                                    "choice (its MODELHOST_TRUST_PICKLE), not a request's")
        if optimize:
            raise InvalidInputError("--optimize runs on a local store only; register "
                                    "the ONNX file yourself to serve it from a server")
        source = Path(path)
        if not source.exists():
            raise FileNotFoundInputError(str(path))
        fields: dict[str, str] = {"force": "true" if force else "false",
                                  "description": description}
        if flavor is not None:
            fields["flavor"] = flavor
        if feature_service is not None:
            fields["feature_service"] = feature_service
        if version is not None:
            fields["version"] = version
        if input_example is not None:
            fields["input_example"] = json.dumps(_records(input_example), allow_nan=False)
        commit = _git_commit()
        if commit is not None:  # the lineage a local register would record
            fields["git_commit"] = commit
        with tempfile.TemporaryFile() as upload:
            filename = _pack(source, upload)
            upload.seek(0)
            answer = self._http.call(
                "POST", _versions(name), data=fields,
                files=[("file", (filename, upload, "application/octet-stream"))])
        return ModelVersion.from_dict(answer)

    def transition(self, name: str, ref: str, stage: Stage | str, *,
                   reason: str = "") -> list[StageChange]:
        answer = self._http.call("POST", path("v1", "models", name, "versions", ref, "stage"),
                                 json={"stage": str(getattr(stage, "value", stage)),
                                       "reason": reason})
        return [StageChange.from_dict(c) for c in answer]

    def set_alias(self, name: str, alias: str, ref: str) -> ModelVersion:
        answer = self._http.call("PUT", path("v1", "models", name, "aliases", alias),
                                 json={"version": ref})
        return self.get_version(name, str(answer["version"]))

    def delete_alias(self, name: str, alias: str) -> None:
        self._http.call("DELETE", path("v1", "models", name, "aliases", alias))

    def deprecate(self, name: str, ref: str, *, sunset: dt.date | str) -> ModelVersion:
        day = sunset.isoformat() if isinstance(sunset, dt.date) else str(sunset)
        return ModelVersion.from_dict(self._http.call(
            "POST", path("v1", "models", name, "versions", ref, "deprecate"),
            json={"sunset": day}))

    def card(self, name: str, ref: str, *, format: str = "md") -> str:
        return self._http.text(path("v1", "models", name, "versions", ref, "card"),
                               params={"format": format})


def _versions(name: str) -> str:
    return path("v1", "models", name, "versions")


def _git_commit() -> str | None:
    # Imported here: modelhost.registry's package loads the whole registry (0.4 s),
    # which a remote client does not need.
    from modelhost.registry.environment import git_commit

    return git_commit()


def _pack(source: Path, into: Any) -> str:
    """Write the upload of ``source`` to ``into``: a file as it is, a folder as a
    gzipped tar of its contents; return the upload's filename."""
    if source.is_file():
        with source.open("rb") as file:
            while chunk := file.read(1 << 20):
                into.write(chunk)
        return source.name
    with tarfile.open(fileobj=into, mode="w:gz") as archive:
        for item in sorted(source.rglob("*")):
            if item.is_file() and not item.is_symlink():
                archive.add(item, arcname=str(item.relative_to(source)), recursive=False)
    return f"{source.name or 'model'}.tar.gz"


def _records(example: Any) -> list[dict[str, Any]]:
    """An input example as the JSON records the upload route takes, made JSON-able as
    a local register makes it (missing values null, times ISO 8601, its first rows)."""
    from modelhost.signature.examples import to_jsonable

    if isinstance(example, dict):
        if example and all(isinstance(v, list) for v in example.values()):
            import pandas as pd

            example = pd.DataFrame(example)
        else:
            example = [example]
    records = to_jsonable(example)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidInputError("an input example is one record, a list of records, a "
                                "dict of columns or a DataFrame")
    return records
