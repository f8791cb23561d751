"""Every route of the server, as one value per request.

:meth:`Routes.parse` turns a method and a path into a :class:`Route`: the protocol, the
model and version reference the path names, the action, the permission it needs and the
shape its errors take. The ASGI front dispatches on it, the guard checks its permission,
refusals use its error shape and uploads get their larger body limit from it. A path that
names no route is :data:`Action.NOT_FOUND`: it needs ``read`` (``deploy`` for a write
method), so that without a key even a 404 says nothing about what exists.

Pure code, on the prediction path: one ``split`` and a dispatch on the first segments.
The path is the decoded ASGI path, taken literally: ``.`` and ``..`` are names like any
other (``/v1/models/../predict`` asks for a model called ``..``, which does not exist) and
never move to another route. Empty segments collapse, so that no spelling of a path
(``//v1//keys``) needs less than its canonical form.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from modelhost.security import Permission

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready",
                        "/ping", "/health", "/version", "/v2"})
"""Liveness and readiness probes: answered without a key."""
DOCS_PATHS = frozenset({"/", "/docs", "/redoc", "/docs/oauth2-redirect", "/openapi.json"})
"""The API documentation (and the root, which sends a browser there): with its assets
under ``/docs/assets/``, what a ``read`` key may see, like any other description of the
routes."""


class Protocol(str, Enum):
    V1 = "v1"
    V2 = "v2"
    MLFLOW = "mlflow"
    MANAGEMENT = "management"
    ADMIN = "admin"
    OPS = "ops"
    DOCS = "docs"
    CONSOLE = "console"  # the web console under /ui (it checks its own session)
    STREAM = "stream"  # events read from a stream (no HTTP route has it)


class Action(str, Enum):
    PREDICT = "predict"
    INFER = "infer"
    INVOCATIONS = "invocations"
    FEEDBACK = "feedback"
    UPLOAD = "upload"
    METADATA = "metadata"
    READY = "ready"
    HEALTH = "health"
    METRICS = "metrics"
    DOCS = "docs"
    CONSOLE = "console"
    LIST = "list"
    DESCRIBE = "describe"
    STAGE = "stage"
    ALIAS = "alias"
    DEPRECATE = "deprecate"
    CARD = "card"
    MONITORING = "monitoring"
    ALERTS = "alerts"
    DEPLOYMENTS = "deployments"
    JOBS = "jobs"
    FEATURES = "features"
    KEYS = "keys"
    AUDIT = "audit"
    NOT_FOUND = "not_found"


class ErrorShape(str, Enum):
    """The error body a route answers with: §3.6 (v1), Open Inference's ``{"error": "..."}``
    (v2) or MLflow's scoring server (mlflow)."""

    V1 = "v1"
    V2 = "v2"
    MLFLOW = "mlflow"


_READ = frozenset({Permission.READ})
_DEPLOY = frozenset({Permission.DEPLOY})
_ADMIN = frozenset({Permission.ADMIN})
_PREDICT = frozenset({Permission.PREDICT})
_METRICS = frozenset({Permission.METRICS})
_PREDICT_OR_READ = frozenset({Permission.PREDICT, Permission.READ})
_OPEN: frozenset[Permission] = frozenset()
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READ_METHODS = frozenset({"GET", "HEAD"})


class Route(NamedTuple):
    """One request's route (a named tuple: immutable, and built in a fraction of the time
    a frozen dataclass takes, which counts on the prediction path).

    Attributes:
        protocol: the API family; None when no route has this path.
        action: what the request asks for (:data:`Action.NOT_FOUND` for no route).
        permissions: any one of these allows the request; empty for the open probes.
        model: the model the permission is checked for (the pinned one of
            ``/invocations``), if the route names one.
        version_ref: the version or alias of a ``/versions/{ref}/`` path.
        error_shape: the body of the route's errors.
        exact: the path has no empty segment inside it (leading and trailing slashes
            aside); only such paths take the prediction fast path.
    """

    protocol: Protocol | None
    action: Action
    permissions: frozenset[Permission]
    model: str | None = None
    version_ref: str | None = None
    error_shape: ErrorShape = ErrorShape.V1
    exact: bool = True

    @property
    def is_open(self) -> bool:
        return not self.permissions

    @property
    def is_prediction(self) -> bool:
        """A POST the fast path answers (predict, infer, invocations)."""
        action = self.action
        return self.exact and (action is _PREDICT_ACTION or action is _INFER
                               or action is _INVOCATIONS)


class Routes:
    """The route table of one server.

    Args:
        pinned_model: the model of ``serve --model`` (what ``/invocations`` predicts with).
        public_metrics: serve ``/metrics`` without a key.
    """

    def __init__(self, *, pinned_model: str | None = None, public_metrics: bool = False) -> None:
        self._pinned = pinned_model
        self._metrics = Route(Protocol.OPS, Action.METRICS,
                              _OPEN if public_metrics else _METRICS)

    def parse(self, method: str, path: str) -> Route:
        """The route of ``method`` and the decoded ``path``; never raises."""
        stripped = path.strip("/")
        parts = stripped.split("/")
        n = len(parts)
        if method == "POST" and (n == 4 or n == 6) and parts[1] == "models":
            # The prediction routes first: they carry nearly all the traffic.
            route = _prediction(parts, n)
            if route is not None and "" not in parts:
                return route
        exact = True
        if not stripped:
            parts, n = [], 0
        elif "" in parts:
            exact = False
            parts = [p for p in parts if p]
            n = len(parts)
        first = parts[0] if n else ""
        if first == "v1" or first == "v2":
            if n >= 3 and parts[1] == "models":
                route = self._model_route(method, parts, n)
            elif first == "v1":
                route = _v1_route(method, parts, n)
            else:
                route = _V2_OPEN.get(_joined(parts))
        elif n == 1 and first == "invocations" and method == "POST":
            route = Route(Protocol.MLFLOW, Action.INVOCATIONS, _PREDICT, self._pinned,
                          error_shape=ErrorShape.MLFLOW)
        elif n == 1 and first == "metrics":
            route = self._metrics
        else:
            route = _other_route(method, parts, n)
        if route is None:
            return _not_found(method, parts, n)
        if not exact:
            return _inexact(route)
        return route

    def _model_route(self, method: str, parts: list[str], n: int) -> Route | None:
        """/v1/models/... and /v2/models/...: predictions, v2 metadata, management."""
        name = parts[2]
        ref: str | None = None
        if n >= 5 and parts[3] == "versions":
            ref = parts[4]
            tail = parts[5:]
        else:
            tail = parts[3:]
        if len(tail) > 1:
            return _management(method, parts, n, name) if parts[0] == "v1" else None
        action = tail[0] if tail else ""
        if parts[0] == "v2":
            if method == "POST" and action == "infer":
                return Route(Protocol.V2, Action.INFER, _PREDICT, name, ref,
                             ErrorShape.V2)
            if method in _READ_METHODS and action in ("", "ready"):
                return Route(Protocol.V2, Action.READY if action else Action.METADATA,
                             _PREDICT_OR_READ, name, ref, ErrorShape.V2)
            return None
        if method == "POST" and action == "predict":
            return Route(Protocol.V1, Action.PREDICT, _PREDICT, name, ref)
        if method == "POST" and action == "invocations" and ref is None:
            return Route(Protocol.MLFLOW, Action.INVOCATIONS, _PREDICT, name,
                         error_shape=ErrorShape.MLFLOW)
        return _management(method, parts, n, name)


_V1, _V2, _MLFLOW = Protocol.V1, Protocol.V2, Protocol.MLFLOW
_PREDICT_ACTION, _INFER, _INVOCATIONS = Action.PREDICT, Action.INFER, Action.INVOCATIONS
_SHAPE_V1, _SHAPE_V2, _SHAPE_MLFLOW = ErrorShape.V1, ErrorShape.V2, ErrorShape.MLFLOW
# All fields given: the tuple's own constructor skips the named one's (twice as fast).
_new = tuple.__new__


def _prediction(parts: list[str], n: int) -> Route | None:
    """A POST of 4 or 6 segments under /v1/models or /v2/models, if it is a prediction."""
    first, action = parts[0], parts[-1]
    if n == 4:
        ref = None
    elif parts[3] == "versions":
        ref = parts[4]
    else:
        return None
    if first == "v1":
        if action == "predict":
            return _new(Route, (_V1, _PREDICT_ACTION, _PREDICT, parts[2], ref, _SHAPE_V1, True))
        if action == "invocations" and ref is None:
            return _new(Route, (_MLFLOW, _INVOCATIONS, _PREDICT, parts[2], None, _SHAPE_MLFLOW,
                                True))
    elif first == "v2" and action == "infer":
        return _new(Route, (_V2, _INFER, _PREDICT, parts[2], ref, _SHAPE_V2, True))
    return None


def _joined(parts: list[str]) -> str:
    return "/" + "/".join(parts)


_V2_OPEN = {
    "/v2": Route(Protocol.V2, Action.METADATA, _OPEN, error_shape=ErrorShape.V2),
    "/v2/health/live": Route(Protocol.V2, Action.HEALTH, _OPEN, error_shape=ErrorShape.V2),
    "/v2/health/ready": Route(Protocol.V2, Action.READY, _OPEN, error_shape=ErrorShape.V2),
}


def _management(method: str, parts: list[str], n: int, name: str) -> Route | None:
    """The §3.4 routes under /v1/models/{name}."""
    read = method in _READ_METHODS
    if n == 3 and read:
        return Route(Protocol.MANAGEMENT, Action.DESCRIBE, _READ, name)
    if n == 4 and parts[3] == "versions":
        if read:
            return Route(Protocol.MANAGEMENT, Action.LIST, _READ, name)
        if method == "POST":
            return Route(Protocol.MANAGEMENT, Action.UPLOAD, _DEPLOY, name)
        return None
    if n >= 5 and parts[3] == "versions":
        ref = parts[4]
        if n == 5 and read:
            return Route(Protocol.MANAGEMENT, Action.DESCRIBE, _READ, name, ref)
        if n == 6 and parts[5] == "card" and read:
            return Route(Protocol.MANAGEMENT, Action.CARD, _READ, name, ref)
        if n == 6 and parts[5] == "stage" and method == "POST":
            return Route(Protocol.MANAGEMENT, Action.STAGE, _DEPLOY, name, ref)
        if n == 6 and parts[5] == "deprecate" and method == "POST":
            return Route(Protocol.MANAGEMENT, Action.DEPRECATE, _DEPLOY, name, ref)
        return None
    if n == 5 and parts[3] == "aliases" and method in ("PUT", "DELETE"):
        return Route(Protocol.MANAGEMENT, Action.ALIAS, _DEPLOY, name)
    if n == 5 and parts[3] == "monitoring" and parts[4] in ("performance", "drift") and read:
        return Route(Protocol.MANAGEMENT, Action.MONITORING, _READ, name)
    if n == 4 and parts[3] == "jobs" and method == "POST":
        # An asynchronous prediction: what a predicting client sends (its body may be
        # a file, so it gets the upload limit).
        return Route(Protocol.V1, Action.JOBS, _PREDICT, name)
    return None


def _v1_route(method: str, parts: list[str], n: int) -> Route | None:
    """/v1/... outside /v1/models/{name}: the model list, keys, the audit log, feedback,
    alerts, jobs, features and deployments."""
    second = parts[1] if n > 1 else ""
    if second == "keys" or second == "audit":
        # The whole namespace is the admin's, whatever follows: a made-up spelling under
        # it never needs less than the routes it sits next to.
        return Route(Protocol.ADMIN, Action.KEYS if second == "keys" else Action.AUDIT,
                     _ADMIN)
    if n == 2 and second == "models" and method in _READ_METHODS:
        return Route(Protocol.MANAGEMENT, Action.LIST, _READ)
    if n == 2 and second == "feedback" and method == "POST":
        # Labels for logged predictions (§3.1): what a predicting client sends.
        return Route(Protocol.V1, Action.FEEDBACK, _PREDICT)
    if second == "alerts" and n <= 3:
        # Rules are managed by deployers and read by viewers (events included).
        if method in _READ_METHODS:
            return Route(Protocol.MANAGEMENT, Action.ALERTS, _READ)
        if method in _WRITE_METHODS:
            return Route(Protocol.MANAGEMENT, Action.ALERTS, _DEPLOY)
    if second == "jobs" and n <= 4 and method in _READ_METHODS:
        # /v1/jobs[/{id}[/result|/rejects]]: a predictor reads its own jobs, a viewer
        # every job (the route checks whose it is).
        return Route(Protocol.V1, Action.JOBS, _PREDICT_OR_READ)
    if second == "features" and n <= 5:
        # /v1/features[/freshness|/services/{name}/online]: deployers apply definitions,
        # viewers (and predicting clients) read them and the online values.
        if n == 2 and method == "POST":
            return Route(Protocol.MANAGEMENT, Action.FEATURES, _DEPLOY)
        if method in _READ_METHODS or (n == 5 and method == "POST"):
            return Route(Protocol.MANAGEMENT, Action.FEATURES, _PREDICT_OR_READ)
        if method in _WRITE_METHODS:
            return Route(Protocol.MANAGEMENT, Action.FEATURES, _DEPLOY)
    if second == "deployments" and n in (3, 4):
        # /v1/deployments/{name}[/rollout|/rollback|/events]: deployers change rollouts,
        # viewers read them.
        if method in _READ_METHODS:
            return Route(Protocol.MANAGEMENT, Action.DEPLOYMENTS, _READ, parts[2])
        if method in _WRITE_METHODS:
            return Route(Protocol.MANAGEMENT, Action.DEPLOYMENTS, _DEPLOY, parts[2])
    return None


_OPEN_ROUTES = {
    "healthz": Route(Protocol.OPS, Action.HEALTH, _OPEN),
    "readyz": Route(Protocol.OPS, Action.READY, _OPEN),
    "ping": Route(Protocol.MLFLOW, Action.HEALTH, _OPEN),
    "health": Route(Protocol.MLFLOW, Action.HEALTH, _OPEN),
    "version": Route(Protocol.MLFLOW, Action.METADATA, _OPEN),
}
_DOCS = Route(Protocol.DOCS, Action.DOCS, _READ)
# Open to the front: the console signs people in itself (a session cookie, not a key
# header) and checks each page's role (serving/console/pages.py).
_CONSOLE = Route(Protocol.CONSOLE, Action.CONSOLE, _OPEN)


def _other_route(method: str, parts: list[str], n: int) -> Route | None:
    """Operations probes, the documentation and the web console."""
    if n and parts[0] == "ui":
        return _CONSOLE
    if n == 1 and parts[0] in _OPEN_ROUTES:
        # Open whatever the method: the framework answers 405 to anything but GET.
        return _OPEN_ROUTES[parts[0]]
    if method in _READ_METHODS and (
            (n <= 2 and _joined(parts) in DOCS_PATHS)
            or (n >= 3 and parts[0] == "docs" and parts[1] == "assets")):
        return _DOCS
    return None


def _not_found(method: str, parts: list[str], n: int) -> Route:
    # The error shape follows the protocol the path looks like it speaks.
    shape = (ErrorShape.V2 if n >= 2 and parts[0] == "v2"
             else ErrorShape.MLFLOW if n and parts[-1] == "invocations"
             else ErrorShape.V1)
    return Route(None, Action.NOT_FOUND, _DEPLOY if method in _WRITE_METHODS else _READ,
                 error_shape=shape)


def _inexact(route: Route) -> Route:
    return route._replace(exact=False)
