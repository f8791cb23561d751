"""The FastAPI application: operations, management, metadata, and documented
prediction routes (answered by the fast path in ``app.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelhost.batch import JobService
from modelhost.errors import ModelhostError
from modelhost.features.service import Features
from modelhost.monitoring import FeedbackService
from modelhost.monitoring.alerts import AlertService
from modelhost.monitoring.drift import DriftService
from modelhost.registry.uploads import UploadLimits
from modelhost.rollout.controller import Controller
from modelhost.rollout.service import RolloutService
from modelhost.security import ApiKeys
from modelhost.serving import admin, docs, feature_routes, infer_v2, openapi, performance, upload
from modelhost.serving import alerts as alert_routes
from modelhost.serving import deployments as deployment_routes
from modelhost.serving import drift as drift_routes
from modelhost.serving import errors as http_errors
from modelhost.serving import feedback as feedback_routes
from modelhost.serving import jobs as job_routes
from modelhost.serving.http import request_id
from modelhost.serving.protocols import v2
from modelhost.serving.routes import OPEN_PATHS, ErrorShape, Routes
from modelhost.serving.server import Server
from modelhost.store.audit import AuditStore
from modelhost.store.monitoring import PredictionLogStore

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


class PredictRequest(BaseModel):
    """Records (`[{"col": value}, ...]`) or columns (`{"col": [...]}`)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[dict[str, Any]] | dict[str, list[Any]] = Field(
        description="A list of records, or an object of equally long columns.")
    params: dict[str, Any] | None = Field(default=None,
                                          description="Parameters passed with the batch.")


class PredictResponse(BaseModel):
    model: str
    version: str
    request_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None


class StageRequest(BaseModel):
    stage: str
    reason: str = ""


class DeprecateRequest(BaseModel):
    sunset: str


class AliasRequest(BaseModel):
    version: str


def build_api(server: Server, *, lifespan: Lifespan, keys: ApiKeys | None = None,
              audit: AuditStore | None = None, feedback: FeedbackService | None = None,
              predictions: PredictionLogStore | None = None,
              drift: DriftService | None = None,
              alerts: AlertService | None = None,
              rollouts: RolloutService | None = None,
              rollout_analysis: Controller | None = None,
              jobs: JobService | None = None,
              features: Features | None = None,
              wake_jobs: Callable[[], None] = lambda: None) -> FastAPI:
    routes = Routes(pinned_model=server.options.model,
                    public_metrics=server.options.public_metrics)
    # No trailing-slash redirects: they build an absolute Location from the Host header.
    api = FastAPI(title="modelhost", version=metadata.version("modelhost"), lifespan=lifespan,
                  redirect_slashes=False, docs_url=None, redoc_url=None,  # see docs.py
                  description="Versioned prediction APIs and their management.")
    registry = server.registry
    pool = server.pool
    predictor = server.predictor

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Registry calls touch the database: keep them off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- errors -------------------------------------------------------------------

    @api.exception_handler(ModelhostError)
    async def _modelhost_error(request: Request, exc: ModelhostError) -> Response:
        rid = request_id(dict(request.headers))
        return Response(http_errors.error_body(exc, rid), http_errors.status_for(exc),
                        headers={k.decode(): v.decode()
                                 for k, v in http_errors.error_headers(exc, rid)})

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        rid = request_id(dict(request.headers))
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):  # not JSON at all: 400
            return _error_response(400, "malformed_request", "the body is not valid JSON", rid)
        details = [{"location": ".".join(str(p) for p in e.get("loc", ())),
                    "message": e.get("msg", "")} for e in errors[:20]]
        first = details[0] if details else {"location": "body", "message": "invalid"}
        return _error_response(422, "invalid_input",
                               f"{first['location']}: {first['message']}", rid,
                               details=details)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        rid = request_id(dict(request.headers))
        # The route's own error shape, as the front's refusals use (an error path: a
        # second parse costs nothing that matters).
        route = routes.parse(request.method, request.scope["path"])
        if route.error_shape is ErrorShape.V2:  # the Open Inference Protocol's shape
            return Response(v2.error_body(str(exc.detail)), exc.status_code,
                            media_type="application/json",
                            headers={**(exc.headers or {}), "x-request-id": rid})
        code = {400: "malformed_request", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error_response(exc.status_code, code, str(exc.detail), rid)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        rid = request_id(dict(request.headers))
        return Response(http_errors.internal_error_body(rid), 500,
                        media_type="application/json", headers={"x-request-id": rid})

    # --- operations ---------------------------------------------------------------

    @api.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        """200 when the database answered and every model with a production version
        serves one or has failed to load; 503 while a model still waits for its first
        version. Lists `serving`, `loading` and `failed` versions (with a one-line
        reason and the seconds to their next retry)."""
        ready, detail = server.readiness()
        return JSONResponse({"ready": ready, **detail}, 200 if ready else 503)

    freshness = (feature_routes.Freshness(features, server.metrics)
                 if features is not None else None)

    @api.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        if freshness is not None:
            await freshness.refresh()
        body, content_type = server.metrics.exposition()
        return Response(body, media_type=content_type)

    # --- predictions (documented here, answered by the fast path) ------------------

    @api.post("/v1/models/{name}/predict", tags=["predictions"],
              response_model=PredictResponse)
    async def predict(name: str, request: PredictRequest) -> Any:  # pragma: no cover
        """Predict with the version the model's deployment routes to (its production
        version). Pin a version or alias with the `X-Model-Version` header."""
        raise AssertionError("answered by the fast path")

    @api.post("/v1/models/{name}/versions/{version}/predict", tags=["predictions"],
              response_model=PredictResponse)
    async def predict_version(name: str, version: str,
                              request: PredictRequest) -> Any:  # pragma: no cover
        """Predict with an explicit version or alias."""
        raise AssertionError("answered by the fast path")

    # --- Open Inference Protocol v2: health and metadata ---------------------------

    def v2_error(exc: ModelhostError) -> Response:
        return Response(v2.error_body(exc.message), http_errors.status_for(exc),
                        media_type="application/json")

    @api.get("/v2", tags=["open inference v2"])
    @api.get("/v2/", include_in_schema=False)  # the protocol's OpenAPI document spells it so
    async def v2_server() -> dict[str, Any]:
        return v2.server_metadata(metadata.version("modelhost"))

    @api.get("/v2/health/live", tags=["open inference v2"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @api.get("/v2/health/ready", tags=["open inference v2"])
    async def v2_ready() -> Response:
        ready, _ = server.readiness()
        return JSONResponse({"ready": ready}, 200 if ready else 503)

    async def v2_metadata(name: str, version: str | None) -> Response:
        try:
            # The loaded version: its outputs (probabilities or not) are those infer answers.
            served = (await predictor.resolve(name, version or _served_ref(server, name))
                      ).served
            versions = [v.version for v in await call(registry.list_versions, name)]
        except ModelhostError as exc:
            return v2_error(exc)
        mv = served.version
        return JSONResponse(v2.model_metadata(name=name, versions=versions,
                                              platform=f"modelhost-{mv.flavor}",
                                              signature=mv.signature,
                                              outputs=infer_v2.outputs_of(served)))

    async def v2_model_ready(name: str, version: str | None) -> Response:
        try:
            served = (await predictor.resolve(name, version)).served
        except ModelhostError as exc:
            return v2_error(exc)
        return JSONResponse({"name": name, "version": served.version.version, "ready": True})

    @api.get("/v2/models/{name}", tags=["open inference v2"])
    async def v2_model(name: str) -> Response:
        return await v2_metadata(name, None)

    @api.get("/v2/models/{name}/versions/{version}", tags=["open inference v2"])
    async def v2_model_version(name: str, version: str) -> Response:
        return await v2_metadata(name, version)

    @api.get("/v2/models/{name}/ready", tags=["open inference v2"])
    async def v2_model_is_ready(name: str) -> Response:
        return await v2_model_ready(name, None)

    @api.get("/v2/models/{name}/versions/{version}/ready", tags=["open inference v2"])
    async def v2_model_version_is_ready(name: str, version: str) -> Response:
        return await v2_model_ready(name, version)

    @api.post("/v2/models/{name}/infer", tags=["open inference v2"])
    async def v2_infer(name: str) -> Any:  # pragma: no cover
        """Open Inference Protocol v2 inference (JSON or binary tensor data)."""
        raise AssertionError("answered by the fast path")

    @api.post("/v2/models/{name}/versions/{version}/infer", tags=["open inference v2"])
    async def v2_infer_version(name: str, version: str) -> Any:  # pragma: no cover
        """Inference with an explicit version or alias."""
        raise AssertionError("answered by the fast path")

    # --- MLflow scoring protocol --------------------------------------------------

    @api.get("/ping", tags=["mlflow scoring"])
    @api.get("/health", tags=["mlflow scoring"])
    async def ping() -> Response:
        return PlainTextResponse("\n")

    @api.get("/version", tags=["mlflow scoring"])
    async def version() -> Response:
        return PlainTextResponse(metadata.version("modelhost"))

    @api.post("/v1/models/{name}/invocations", tags=["mlflow scoring"])
    async def invocations(name: str) -> Any:  # pragma: no cover
        """MLflow scoring protocol: dataframe_split, dataframe_records, instances, inputs
        (JSON) or text/csv. On `serve --model NAME`, also at `/invocations`."""
        raise AssertionError("answered by the fast path")

    # --- management (read and lifecycle) ------------------------------------------

    @api.get("/v1/models", tags=["management"])
    async def list_models() -> list[dict[str, Any]]:
        return [m.to_dict() for m in await call(registry.list_models)]

    @api.get("/v1/models/{name}", tags=["management"])
    async def get_model(name: str) -> dict[str, Any]:
        model = await call(registry.get_model, name)
        data: dict[str, Any] = model.to_dict()
        data["serving"] = pool.routes.get(name)
        return data

    @api.get("/v1/models/{name}/versions", tags=["management"])
    async def list_versions(name: str) -> list[dict[str, Any]]:
        return [v.to_dict() for v in await call(registry.list_versions, name)]

    @api.get("/v1/models/{name}/versions/{version}", tags=["management"])
    async def get_version(name: str, version: str) -> dict[str, Any]:
        mv = await call(registry.get_version, name, version)
        data: dict[str, Any] = mv.to_dict()
        return data

    @api.post("/v1/models/{name}/versions/{version}/stage", tags=["management"])
    async def set_stage(name: str, version: str, body: StageRequest) -> list[dict[str, Any]]:
        changes = await call(registry.transition, name, version, body.stage,
                             reason=body.reason)
        return [c.to_dict() for c in changes]

    @api.post("/v1/models/{name}/versions/{version}/deprecate", tags=["management"])
    async def deprecate(name: str, version: str, body: DeprecateRequest) -> dict[str, Any]:
        """Deprecate a version: it answers with `Deprecation` and `Sunset` headers, and
        410 Gone after `sunset` (YYYY-MM-DD, today or later)."""
        mv = await call(registry.deprecate, name, version, sunset=body.sunset)
        data: dict[str, Any] = mv.to_dict()
        return data

    @api.put("/v1/models/{name}/aliases/{alias}", tags=["management"])
    async def set_alias(name: str, alias: str, body: AliasRequest) -> dict[str, Any]:
        mv = await call(registry.set_alias, name, alias, body.version)
        return {"model": name, "alias": alias, "version": mv.version}

    @api.delete("/v1/models/{name}/aliases/{alias}", tags=["management"], status_code=204)
    async def delete_alias(name: str, alias: str) -> Response:
        await call(registry.delete_alias, name, alias)
        return Response(status_code=204)

    @api.get("/v1/models/{name}/versions/{version}/card", tags=["management"])
    async def card(name: str, version: str, format: str = "md") -> Response:
        text = await call(registry.card, name, version, format=format)
        media = "text/html" if format == "html" else "text/markdown"
        return PlainTextResponse(text, media_type=f"{media}; charset=utf-8")

    # --- documentation ------------------------------------------------------------

    @api.get("/", include_in_schema=False)
    async def home() -> Response:
        """A browser at the root lands on the API documentation."""
        return RedirectResponse(docs.SWAGGER_UI, status_code=307)

    docs.install(api)
    admin.install(api, keys=keys, audit=audit)
    feedback_routes.install(api, feedback)
    performance.install(api, registry, pool, predictions)
    drift_routes.install(api, registry, drift)
    alert_routes.install(api, alerts)
    deployment_routes.install(api, rollouts, rollout_analysis)
    job_routes.install(api, jobs, wake=wake_jobs)
    feature_routes.install(api, features)
    upload.install(api, registry, UploadLimits(max_bytes=server.options.limits.max_upload_bytes,
                                               max_files=server.options.limits.max_upload_files))
    openapi.install(api, registry,
                    open_paths=OPEN_PATHS if server.options.auth else None)
    return api



def _error_response(status: int, code: str, message: str, rid: str,
                    **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra,
                                   "request_id": rid}}, status,
                        headers={"x-request-id": rid})


def _served_ref(server: Server, name: str) -> str:
    """The stable version serving ``name`` now, else the one its routing names (perhaps
    still loading), else the latest one."""
    routing = server.pool.active(name) or server.watcher.table.routing(name)
    return routing.arms[0].version if routing is not None else "latest"
