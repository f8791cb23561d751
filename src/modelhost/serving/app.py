"""``create_app``: one ASGI application for every protocol.

Prediction routes take a lean path: :class:`ModelhostApp` matches their paths itself and
answers them with raw ASGI messages, skipping the framework's routing, dependency
injection and response classes on the hot path. Everything else (operations,
management, metadata, OpenAPI and ``/docs``) is a FastAPI application behind it, which
also declares the prediction routes so that they are documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence

from modelhost._actor import set_actor
from modelhost.batch import JobService
from modelhost.batch.worker import JobWorker
from modelhost.errors import (
    HeadersTooLargeError,
    ModelhostError,
    NotFoundError,
    PayloadTooLargeError,
)
from modelhost.features.service import Features
from modelhost.registry import Registry
from modelhost.rollout.controller import Controller
from modelhost.rollout.service import for_registry
from modelhost.security import ApiKeys, Permission, RateLimiter, allows
from modelhost.serving import errors as http_errors
from modelhost.serving import infer_v2, invocations, v1
from modelhost.serving.cache import open_cache
from modelhost.serving.features import binder
from modelhost.serving.guard import MODELS_SCOPE_KEY, Guard
from modelhost.serving.http import (
    ASGIApp,
    Message,
    Receive,
    Reply,
    Scope,
    Send,
    header_map,
    read_body,
    request_id,
    security_headers,
    send_reply,
)
from modelhost.serving.jobs import READS_SCOPE_KEY
from modelhost.serving.metrics import Metrics
from modelhost.serving.monitor import Monitoring
from modelhost.serving.observers import Observation, Observer, Observers
from modelhost.serving.pool import ModelPool
from modelhost.serving.predictor import Predictor, Trace
from modelhost.serving.rollouts import RolloutLoop
from modelhost.serving.routes import Action, ErrorShape, Protocol, Route, Routes
from modelhost.serving.server import Background, Server, ServerOptions
from modelhost.serving.shadow import ShadowRunner
from modelhost.serving.watcher import RoutingWatcher
from modelhost.store.alerts import AlertStore, LeaseStore
from modelhost.store.audit import AuditStore
from modelhost.store.datasets import DatasetStore
from modelhost.store.deployments import DeploymentStore
from modelhost.store.monitoring import PredictionLogStore
from modelhost.store.profiles import ProfileStore
from modelhost.store.shadows import ShadowStore
from modelhost.store.tracking import TrackingStore

log = logging.getLogger(__name__)

_MAX_HEADER_BYTES = 64 * 1024
_SETTLE_TIMEOUT_S = 600.0  # the initial loads after which the heap is frozen
_MAX_HEADERS = 200



def v1_error(error: ModelhostError, rid: str) -> Reply:
    return Reply(http_errors.status_for(error), http_errors.error_body(error, rid),
                 http_errors.error_headers(error, rid))


_V1, _V2 = Protocol.V1, Protocol.V2


def _error_shape(shape: ErrorShape) -> Callable[[ModelhostError, str], Reply]:
    """The error reply of a route's protocol (§3.6, Open Inference or MLflow)."""
    return (infer_v2.error if shape is ErrorShape.V2
            else invocations.error if shape is ErrorShape.MLFLOW else v1_error)


class ModelhostApp:
    """The ASGI entry point: the guard (keys, roles, rate limits), then the prediction
    fast path in front of the FastAPI app."""

    def __init__(self, server: Server, api: ASGIApp, *, guard: Guard | None = None) -> None:
        self.server = server
        self.api = api
        self.guard = guard
        self.routes = Routes(pinned_model=server.options.model,
                             public_metrics=server.options.public_metrics)
        self._http: ASGIApp = self._handle
        if server.options.cors_origins:
            from starlette.middleware.cors import CORSMiddleware

            # Outermost, so that preflight requests (which carry no key) are answered.
            self._http = CORSMiddleware(
                self._handle, allow_origins=list(server.options.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["authorization", "x-api-key", "content-type",
                               "x-model-version", "x-request-id", "x-routing-key",
                               "x-request-timeout-ms"],
                expose_headers=["x-model-version", "x-request-id", "retry-after"])

    @contextlib.asynccontextmanager
    async def running(self, *, wait_for_models: bool = True) -> AsyncIterator[ModelhostApp]:
        """Run the app's lifespan as a server would (start loading the models and the
        watcher; then drain and stop), for embedding it in-process, e.g. with
        ``httpx.ASGITransport``.

        A server answers (``/healthz``, ``/readyz``) while its models load; here, unless
        ``wait_for_models`` is false, the block starts once every production version has
        loaded or failed (at most the pool's ``load_wait_s``), as a test usually wants.
        """
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        task = asyncio.create_task(self({"type": "lifespan", "asgi": {"version": "3.0"}},
                                        inbox.get, outbox.put))
        await inbox.put({"type": "lifespan.startup"})
        started = await outbox.get()
        if started["type"] != "lifespan.startup.complete":
            await task
            raise RuntimeError(f"the app failed to start: {started.get('message', '')}")
        try:
            if wait_for_models:
                pool = self.server.pool
                await pool.wait_until_ready(timeout_s=pool.options.load_wait_s)
            yield self
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            await outbox.get()
            await task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            # httptools reads headers of any size; refuse big ones before any work.
            if len(headers) > _MAX_HEADERS or sum(
                    len(k) + len(v) for k, v in headers) > _MAX_HEADER_BYTES:
                exc = HeadersTooLargeError(_MAX_HEADER_BYTES, _MAX_HEADERS)
                await send_reply(send, v1_error(exc, request_id(header_map(scope))))
                return
            await self._http(scope, receive, send)
            return
        await self.api(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        route = self.routes.parse(method, path)
        if self.guard is not None and not await self._admit(route, scope, send):
            return
        if route.is_prediction:
            await self._serve(scope, receive, send, route)
            return
        if self.guard is None:  # who changed what, for the audit log
            client = scope.get("client")
            set_actor(f"anonymous@{client[0]}" if client else "anonymous")
        limits = self.server.options.limits
        limit = (limits.max_upload_bytes if route.action is Action.UPLOAD
                 or route.action is Action.JOBS
                 else limits.max_body_bytes)
        rid = _ensure_request_id(scope)
        send = _with_security_headers(send, path, rid)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            exc = PayloadTooLargeError("the request body", limit, "bytes")
            await send_reply(send, v1_error(exc, rid))
            return
        guard = _BodyLimit(receive, send, limit, rid)
        await self.api(scope, guard.receive, guard.send)

    async def _admit(self, route: Route, scope: Scope, send: Send) -> bool:
        """Run the guard; answer a refused request here, in its route's error shape."""
        assert self.guard is not None
        rid = _ensure_request_id(scope)
        try:
            principal = await self.guard.check(route, scope["headers"], rid,
                                               method=scope["method"], path=scope["path"])
        except ModelhostError as exc:
            reply = _error_shape(route.error_shape)(exc, rid)
            self.server.metrics.errors.labels("-", "-", exc.code).inc()
            await send_reply(send, reply)
            return False
        if principal is not None and principal.models is not None:
            scope[MODELS_SCOPE_KEY] = principal.models  # what the routes may act on
        if principal is not None and route.action is Action.JOBS:
            # Whether it reads every job, or its own only (not on the prediction path).
            scope[READS_SCOPE_KEY] = allows(principal.role, Permission.READ)
        return True

    async def _predict(self, route: Route, body: bytes, headers: dict[str, str], rid: str,
                       trace: Trace) -> Reply:
        """Answer a prediction route (:attr:`Route.is_prediction`) in its protocol."""
        predictor = self.server.predictor
        protocol = route.protocol
        if protocol is _V1:
            return await v1.predict(predictor, route.model or "", route.version_ref, body,
                                    headers, rid, trace)
        if protocol is _V2:
            return await infer_v2.infer(predictor, route.model or "", route.version_ref,
                                        body, headers, rid, trace)
        if route.model is None:
            raise NotFoundError("/invocations needs a server started with "
                                "'modelhost serve --model NAME'")
        return await invocations.invocations(predictor, route.model, body, headers, rid,
                                             trace)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        rid = request_id(headers)
        trace = Trace()
        code = None
        try:
            body = await read_body(receive, headers,
                                   limit=self.server.options.limits.max_body_bytes)
            reply = await self._predict(route, body, headers, rid, trace)
        except ModelhostError as exc:
            reply = _error_shape(route.error_shape)(exc, rid)
            code = exc.code
        except Exception:  # never a traceback to the client; the log has it
            log.exception("request %s failed", rid)
            reply = Reply(500, http_errors.internal_error_body(rid),
                          [(b"content-type", b"application/json"),
                           (b"x-request-id", rid.encode())])
            code = "internal"
        await send_reply(send, reply)
        self._observe(route, trace, reply.status, code, time.perf_counter() - started, rid)

    def _observe(self, route: Route, trace: Trace, status: int, code: str | None,
                 latency_s: float, rid: str) -> None:
        """Hand the answered request to the observers (after the answer was sent). Once
        per request: built field by field, cheaply, in the order of Observation."""
        resolved, prediction = trace.resolved, trace.prediction
        if resolved is not None:
            model: str | None = route.model
            version: str | None = resolved.served.version.version
            arm = resolved.arm
        else:  # only models of the routing table are named: made-up names in URLs must
            # not grow any observer's records
            model = route.model if self.server.knows(route.model) else None
            version = arm = None
        at = time.time()
        if prediction is None:
            observation = Observation(route, model, version, arm, status, latency_s, 0, rid,
                                      at, code)
        elif self.server.observers.wants_data:
            observation = Observation(route, model, version, arm, status, latency_s,
                                      prediction.rows, rid, at, code, prediction.cached,
                                      prediction.inputs, prediction.predictions,
                                      prediction.probabilities)
        else:
            observation = Observation(route, model, version, arm, status, latency_s,
                                      prediction.rows, rid, at, code, prediction.cached)
        self.server.observers.notify(observation)


class _BodyLimit:
    """Stops a request body growing past ``limit`` bytes (a chunked body declares no
    length): answers 413 itself, tells the app the client left, and drops whatever the
    app still tries to send. (Raising from ``receive`` would not do: FastAPI turns any
    error while reading a body into a 400.)"""

    def __init__(self, receive: Receive, send: Send, limit: int, rid: str) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._rid = rid
        self._seen = 0
        self._started = False
        self._refused = False

    async def receive(self) -> Message:
        if self._refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self._refused = True
                if not self._started:
                    exc = PayloadTooLargeError("the request body", self._limit, "bytes")
                    self._started = True
                    await send_reply(self._send, v1_error(exc, self._rid))
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self._refused:
            return
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)


def _ensure_request_id(scope: Scope) -> str:
    """The request's id: the caller's sane X-Request-Id, or a new one written into the
    scope's headers, so that the routes, the audit log and the answer share it."""
    headers = header_map(scope)
    rid = request_id(headers)
    if headers.get("x-request-id") != rid:
        scope["headers"] = [*(h for h in scope["headers"] if h[0] != b"x-request-id"),
                            (b"x-request-id", rid.encode())]
    return rid


def _with_security_headers(send: Send, path: str, rid: str) -> Send:
    """Adds the security headers, and X-Request-Id where the framework answered without
    it (its own 404/405/422)."""
    extra = security_headers(path)
    id_header = (b"x-request-id", rid.encode())

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"x-request-id" for name, _ in headers):
                headers.append(id_header)
            message["headers"] = [*headers, *extra]
        await send(message)

    return wrapped


def create_app(registry: Registry, *, options: ServerOptions | None = None,
               keys: ApiKeys | None = None, audit: AuditStore | None = None,
               predictions: PredictionLogStore | None = None,
               profiles: ProfileStore | None = None,
               alerts: AlertStore | None = None, leases: LeaseStore | None = None,
               deployments: DeploymentStore | None = None,
               shadows: ShadowStore | None = None,
               jobs: JobService | None = None,
               features: Features | None = None,
               runs: TrackingStore | None = None,
               datasets: DatasetStore | None = None,
               console_secret: bytes | None = None,
               observers: Sequence[Observer] = (),
               background: Sequence[Background] = (),
               today: Callable[[], dt.date] = dt.date.today,
               clock: Callable[[], float] = time.monotonic) -> ModelhostApp:
    """Build the server over a registry. Nothing is loaded until the lifespan starts.

    With ``options.auth`` every route but the health probes needs a key from ``keys``;
    denied attempts at privileged routes go to ``audit``. With ``predictions`` (and
    ``options.monitor.prediction_log``) answered predictions are logged there and
    ``/v1/feedback`` joins labels to them. With ``profiles`` (and ``options.monitor.profiles``)
    each worker profiles its live traffic for drift. With ``alerts`` the ``/v1/alerts``
    routes manage rules, and with ``leases`` (and ``options.monitor.alerts``) one process of
    all workers evaluates them. With ``deployments`` the ``/v1/deployments`` routes
    start, move and roll back rollouts (versions resolved and checked by the registry),
    and with ``profiles`` and ``leases`` too (and ``options.monitor.rollouts``) one
    process of all workers runs the rollout controller. Shadowed requests are copied to
    their shadow version, and with ``shadows`` the comparisons are stored. With ``jobs``
    the ``/v1/jobs`` routes take asynchronous prediction jobs, and (with
    ``options.jobs.run``) every process runs them (on SQLite, with ``leases``, one).
    With ``features``, versions bound to a feature service look their features up in
    its online store (see ``features.py``). The web console at ``/ui`` shows all of it,
    and ``runs`` and ``datasets`` too; ``console_secret`` signs its sessions (the same
    for every process that should accept them; a random one for this app alone when
    not given).
    ``observers`` watch every answered prediction
    request, after the metrics and the log (see ``observers.py``); ``background``
    runs beside the server in every process (stream consumers). ``today``
    dates sunsets; ``clock`` (monotonic seconds) times the retries of failed loads.
    """
    from modelhost.security.sessions import Sessions
    from modelhost.serving import console
    from modelhost.serving.api import build_api

    options = options or ServerOptions()
    metrics = Metrics()
    pool = ModelPool(registry, options=options.pool, on_batch=metrics.on_batch,
                     on_load=metrics.on_load, on_load_failed=metrics.on_load_failed,
                     bind_features=binder(features) if features is not None else None,
                     clock=clock)
    watcher = RoutingWatcher(registry, interval_s=options.pool.reload_interval_s,
                             publish=pool.apply, only=options.model,
                             wake_in=pool.next_retry_in)
    cache = open_cache(options.redis_url)
    guard = None
    limiter = None
    if options.auth:
        if keys is None:
            raise ValueError("options.auth needs the key service (keys=...)")
        limiter = RateLimiter(options.redis_url)
        guard = Guard(keys, audit=audit, limiter=limiter, default_rate=options.rate_limit)
    rollouts = None if deployments is None else for_registry(deployments, registry)
    monitoring = Monitoring(registry, options.monitor, predictions=predictions,
                            profiles=profiles, alerts=alerts, leases=leases,
                            rollouts=rollouts, served=lambda: watcher.table.wanted(),
                            publish_health=metrics.publish_health)
    watching = Observers([metrics, *monitoring.observers, *observers],
                         on_error=metrics.observer_failed)
    predictor = Predictor(pool, watcher, registry, metrics=metrics, limits=options.limits,
                          cache=cache, keep_inputs=watching.wants_data, today=today)
    shadow_runner = predictor.shadows = ShadowRunner(pool, shadows)
    monitoring.also_flush(shadow_runner.flush)
    if shadows is not None:  # shadow counts are kept as long as the hourly profiles
        keep = dt.timedelta(days=options.monitor.profile_retention_days)
        monitoring.also_prune(lambda now: shadows.prune(before=now - keep))
    controller = None if rollouts is None or profiles is None else Controller(
        rollouts, profiles, predictions=predictions, shadows=shadows)
    rollout_loop = None if (controller is None or leases is None
                            or not options.monitor.rollouts) else RolloutLoop(
        controller, leases, interval_s=options.monitor.rollout_interval_s)
    server = Server(registry=registry, watcher=watcher, pool=pool, predictor=predictor,
                    metrics=metrics, observers=watching, options=options)
    job_worker = None if jobs is None or not options.jobs.run else JobWorker(
        jobs, options=options.jobs.worker,
        leases=leases if jobs.one_process else None)

    async def settle() -> None:
        await pool.wait_until_ready(timeout_s=_SETTLE_TIMEOUT_S)
        # Everything loaded by now (libraries, models) lives as long as the process:
        # keep it out of the collector's way, so that full collections stay short and
        # do not stall requests for tens of milliseconds.
        gc.collect()
        gc.freeze()

    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        # Listen first: the first check only reads the routing state and starts the
        # loads; /healthz answers at once, /readyz says what is still loading, and a
        # request for a loading version waits for it (up to load_wait_s).
        await watcher.start()
        monitoring.start()
        if rollout_loop is not None:
            rollout_loop.start()
        if job_worker is not None:
            job_worker.start()
        for work in background:
            await work.start(server)
        settling = asyncio.create_task(settle(), name="modelhost-settle")
        try:
            yield
        finally:
            settling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settling
            for work in background:  # drained while the models still answer
                await work.stop()
            if rollout_loop is not None:
                await rollout_loop.stop()
            if job_worker is not None:
                await job_worker.stop()
            await watcher.stop()
            await shadow_runner.stop()
            await pool.stop()
            await monitoring.stop()
            await cache.close()
            if features is not None:
                await features.aclose()
            if limiter is not None:
                await limiter.close()

    api = build_api(server, lifespan=lifespan, keys=keys, audit=audit,
                    feedback=monitoring.feedback,
                    predictions=predictions if monitoring.log is not None else None,
                    drift=monitoring.drift, alerts=monitoring.alerts,
                    rollouts=rollouts, rollout_analysis=controller, jobs=jobs,
                    features=features,
                    wake_jobs=job_worker.wake if job_worker is not None else lambda: None)
    console.install(api, console.ConsoleServices(
        registry=registry, auth=options.auth,
        sessions=(Sessions(keys, secret=console_secret or secrets.token_bytes(32))
                  if keys is not None else None), keys=keys, audit=audit,
        rollouts=rollouts, analysis=controller, profiles=profiles,
        monitoring=((monitoring.drift, predictions)
                    if monitoring.drift is not None and predictions is not None else None),
        alerts=monitoring.alerts, runs=runs, datasets=datasets))
    return ModelhostApp(server, api, guard=guard)
