"""Per-model OpenAPI: one documented predict route per model, with a request schema and
an example built from its signature and input example."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from modelhost.entities import ColumnSpec, ColumnType, ModelVersion
from modelhost.errors import ModelhostError
from modelhost.registry import Registry

_JSON_TYPES: dict[ColumnType, dict[str, str]] = {
    ColumnType.DOUBLE: {"type": "number", "format": "double"},
    ColumnType.FLOAT: {"type": "number", "format": "float"},
    ColumnType.LONG: {"type": "integer", "format": "int64"},
    ColumnType.INTEGER: {"type": "integer", "format": "int32"},
    ColumnType.BOOLEAN: {"type": "boolean"},
    ColumnType.STRING: {"type": "string"},
    ColumnType.DATETIME: {"type": "string", "format": "date-time"},
}
_CACHE_SECONDS = 10.0


def record_schema(columns: tuple[ColumnSpec, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for column in columns:
        schema: dict[str, Any] = dict(_JSON_TYPES[column.type])
        if column.nullable:
            schema["nullable"] = True
        properties[column.name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": [c.name for c in columns if c.required]}


def model_path(mv: ModelVersion) -> dict[str, Any]:
    """The OpenAPI path item of ``/v1/models/{mv.model}/predict``."""
    body: dict[str, Any] = {"type": "object", "required": ["inputs"],
                            "additionalProperties": False, "properties": {
                                "params": {"type": "object"}}}
    if mv.signature is not None and mv.signature.columns:
        body["properties"]["inputs"] = {"type": "array", "minItems": 1,
                                        "items": record_schema(mv.signature.columns)}
    else:
        body["properties"]["inputs"] = {"type": "array", "items": {"type": "array"}}
    content: dict[str, Any] = {"schema": body}
    if mv.input_example is not None:
        content["example"] = {"inputs": mv.input_example}
    return {"post": {
        "tags": [f"model {mv.model}"],
        "summary": f"Predict with {mv.model} (production: {mv.version})",
        "operationId": f"predict_{mv.model.replace('-', '_').replace('.', '_')}",
        "requestBody": {"required": True, "content": {"application/json": content}},
        "responses": {"200": {"description": "Predictions", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
            "422": {"description": "The inputs break the signature"}},
    }}


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API key: `Authorization: Bearer mh_...`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def install(api: Any, registry: Registry, *, clock: Callable[[], float] = time.monotonic,
            open_paths: frozenset[str] | None = None) -> None:
    """Make ``api.openapi()`` add one predict path per production model (cached 10 s).

    With ``open_paths`` (auth is on), the document declares the key schemes, requires one
    everywhere (so that `/docs` offers "Authorize") and none on those paths."""
    base = api.openapi
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if cached and clock() - cached["at"] < _CACHE_SECONDS:
            return cached["schema"]  # type: ignore[no-any-return]
        schema = dict(base())
        paths = dict(schema.get("paths", {}))
        try:
            for model in registry.list_models():
                if model.production_version is None:
                    continue
                mv = registry.get_version(model.name, model.production_version)
                paths[f"/v1/models/{model.name}/predict"] = model_path(mv)
        except ModelhostError:  # the database is away: document the generic routes only
            pass
        schema["paths"] = paths
        if open_paths is not None:
            _declare_security(schema, open_paths)
        cached.update(at=clock(), schema=schema)
        return schema

    api.openapi = openapi


def _declare_security(schema: dict[str, Any], open_paths: frozenset[str]) -> None:
    components = dict(schema.get("components", {}))
    components["securitySchemes"] = SECURITY_SCHEMES
    schema["components"] = components
    schema["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, item in schema["paths"].items():
        if path in open_paths:
            schema["paths"][path] = {method: {**operation, "security": []}
                                     for method, operation in item.items()}
