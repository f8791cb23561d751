"""The route parser: every route family of the product, and the paths that name none."""

from __future__ import annotations

import pytest

from modelhost.security import Permission
from modelhost.serving.routes import Action, ErrorShape, Protocol, Route, Routes

READ = {Permission.READ}
DEPLOY = {Permission.DEPLOY}
ADMIN = {Permission.ADMIN}
PREDICT = {Permission.PREDICT}
PREDICT_OR_READ = {Permission.PREDICT, Permission.READ}

ROUTES = Routes(pinned_model="churn")


def parse(method: str, path: str) -> Route:
    return ROUTES.parse(method, path)


@pytest.mark.parametrize(("method", "path", "protocol", "action", "model", "ref", "needs",
                          "shape"), [
    # §3.1 predictions
    ("POST", "/v1/models/iris/predict", Protocol.V1, Action.PREDICT, "iris", None, PREDICT,
     ErrorShape.V1),
    ("POST", "/v1/models/iris/versions/1.2.0/predict", Protocol.V1, Action.PREDICT, "iris",
     "1.2.0", PREDICT, ErrorShape.V1),
    ("POST", "/v1/models/iris/versions/champion/predict", Protocol.V1, Action.PREDICT, "iris",
     "champion", PREDICT, ErrorShape.V1),
    ("POST", "/v1/feedback", Protocol.V1, Action.FEEDBACK, None, None, PREDICT, ErrorShape.V1),
    # §3.2 Open Inference Protocol
    ("GET", "/v2", Protocol.V2, Action.METADATA, None, None, set(), ErrorShape.V2),
    ("GET", "/v2/health/live", Protocol.V2, Action.HEALTH, None, None, set(), ErrorShape.V2),
    ("GET", "/v2/health/ready", Protocol.V2, Action.READY, None, None, set(), ErrorShape.V2),
    ("GET", "/v2/models/iris", Protocol.V2, Action.METADATA, "iris", None, PREDICT_OR_READ,
     ErrorShape.V2),
    ("HEAD", "/v2/models/iris/versions/1.0.0", Protocol.V2, Action.METADATA, "iris", "1.0.0",
     PREDICT_OR_READ, ErrorShape.V2),
    ("GET", "/v2/models/iris/ready", Protocol.V2, Action.READY, "iris", None,
     PREDICT_OR_READ, ErrorShape.V2),
    ("GET", "/v2/models/iris/versions/1.0.0/ready", Protocol.V2, Action.READY, "iris",
     "1.0.0", PREDICT_OR_READ, ErrorShape.V2),
    ("POST", "/v2/models/iris/infer", Protocol.V2, Action.INFER, "iris", None, PREDICT,
     ErrorShape.V2),
    ("POST", "/v2/models/iris/versions/1.0.0/infer", Protocol.V2, Action.INFER, "iris",
     "1.0.0", PREDICT, ErrorShape.V2),
    # §3.3 MLflow scoring: /invocations predicts with the pinned model
    ("POST", "/invocations", Protocol.MLFLOW, Action.INVOCATIONS, "churn", None, PREDICT,
     ErrorShape.MLFLOW),
    ("POST", "/v1/models/iris/invocations", Protocol.MLFLOW, Action.INVOCATIONS, "iris", None,
     PREDICT, ErrorShape.MLFLOW),
    ("GET", "/ping", Protocol.MLFLOW, Action.HEALTH, None, None, set(), ErrorShape.V1),
    ("GET", "/health", Protocol.MLFLOW, Action.HEALTH, None, None, set(), ErrorShape.V1),
    ("GET", "/version", Protocol.MLFLOW, Action.METADATA, None, None, set(), ErrorShape.V1),
    # §3.4 management
    ("GET", "/v1/models", Protocol.MANAGEMENT, Action.LIST, None, None, READ, ErrorShape.V1),
    ("GET", "/v1/models/iris", Protocol.MANAGEMENT, Action.DESCRIBE, "iris", None, READ,
     ErrorShape.V1),
    ("GET", "/v1/models/iris/versions", Protocol.MANAGEMENT, Action.LIST, "iris", None, READ,
     ErrorShape.V1),
    ("POST", "/v1/models/iris/versions", Protocol.MANAGEMENT, Action.UPLOAD, "iris", None,
     DEPLOY, ErrorShape.V1),
    ("GET", "/v1/models/iris/versions/1.0.0", Protocol.MANAGEMENT, Action.DESCRIBE, "iris",
     "1.0.0", READ, ErrorShape.V1),
    ("POST", "/v1/models/iris/versions/1.0.0/stage", Protocol.MANAGEMENT, Action.STAGE,
     "iris", "1.0.0", DEPLOY, ErrorShape.V1),
    ("PUT", "/v1/models/iris/aliases/champion", Protocol.MANAGEMENT, Action.ALIAS, "iris",
     None, DEPLOY, ErrorShape.V1),
    ("DELETE", "/v1/models/iris/aliases/champion", Protocol.MANAGEMENT, Action.ALIAS, "iris",
     None, DEPLOY, ErrorShape.V1),
    ("GET", "/v1/models/iris/versions/1.0.0/card", Protocol.MANAGEMENT, Action.CARD, "iris",
     "1.0.0", READ, ErrorShape.V1),
    ("GET", "/v1/keys", Protocol.ADMIN, Action.KEYS, None, None, ADMIN, ErrorShape.V1),
    ("POST", "/v1/keys", Protocol.ADMIN, Action.KEYS, None, None, ADMIN, ErrorShape.V1),
    ("DELETE", "/v1/keys/abc", Protocol.ADMIN, Action.KEYS, None, None, ADMIN, ErrorShape.V1),
    ("GET", "/v1/audit", Protocol.ADMIN, Action.AUDIT, None, None, ADMIN, ErrorShape.V1),
    ("GET", "/v1/audit/verify", Protocol.ADMIN, Action.AUDIT, None, None, ADMIN,
     ErrorShape.V1),
    # §3.5 operations and the documentation
    ("GET", "/healthz", Protocol.OPS, Action.HEALTH, None, None, set(), ErrorShape.V1),
    ("GET", "/readyz", Protocol.OPS, Action.READY, None, None, set(), ErrorShape.V1),
    ("GET", "/metrics", Protocol.OPS, Action.METRICS, None, None, {Permission.METRICS},
     ErrorShape.V1),
    ("GET", "/", Protocol.DOCS, Action.DOCS, None, None, READ, ErrorShape.V1),
    ("GET", "/docs", Protocol.DOCS, Action.DOCS, None, None, READ, ErrorShape.V1),
    ("GET", "/redoc", Protocol.DOCS, Action.DOCS, None, None, READ, ErrorShape.V1),
    ("GET", "/docs/oauth2-redirect", Protocol.DOCS, Action.DOCS, None, None, READ,
     ErrorShape.V1),
    ("GET", "/openapi.json", Protocol.DOCS, Action.DOCS, None, None, READ, ErrorShape.V1),
    ("HEAD", "/docs/assets/swagger-ui.css", Protocol.DOCS, Action.DOCS, None, None, READ,
     ErrorShape.V1),
])
def test_every_route_family(method: str, path: str, protocol: Protocol, action: Action,
                            model: str | None, ref: str | None, needs: set[Permission],
                            shape: ErrorShape) -> None:
    route = parse(method, path)
    assert (route.protocol, route.action, route.model, route.version_ref) == (
        protocol, action, model, ref)
    assert set(route.permissions) == needs
    assert route.is_open == (not needs)
    assert route.error_shape is shape
    assert route.exact
    assert route.is_prediction == (action in (Action.PREDICT, Action.INFER,
                                              Action.INVOCATIONS))


@pytest.mark.parametrize(("method", "path", "needs", "shape"), [
    ("GET", "/v1/nothing-here", READ, ErrorShape.V1),
    ("POST", "/v1/nothing-here", DEPLOY, ErrorShape.V1),
    ("GET", "/nothing", READ, ErrorShape.V1),
    ("DELETE", "/", DEPLOY, ErrorShape.V1),
    # A prediction action in the wrong place, protocol or method.
    ("POST", "/v1/models/x/predict/extra", DEPLOY, ErrorShape.V1),
    ("POST", "/v1/models/x/infer", DEPLOY, ErrorShape.V1),
    ("POST", "/v2/models/x/predict", DEPLOY, ErrorShape.V2),
    ("POST", "/v2/models/x/invocations", DEPLOY, ErrorShape.V2),
    ("POST", "/v1/models/x/versions/1.0.0/invocations", DEPLOY, ErrorShape.MLFLOW),
    ("POST", "/v1/models/x/other/1.0.0/predict", DEPLOY, ErrorShape.V1),
    ("GET", "/v1/models/x/predict", READ, ErrorShape.V1),
    ("GET", "/invocations", READ, ErrorShape.MLFLOW),
    ("GET", "/v2/models/x/infer", READ, ErrorShape.V2),
    ("GET", "/v2/models/x/versions", READ, ErrorShape.V2),
    ("GET", "/v2/models", READ, ErrorShape.V2),
    ("POST", "/v2/models/x", DEPLOY, ErrorShape.V2),
    ("GET", "/v1/models/x/aliases/a", READ, ErrorShape.V1),
    ("POST", "/v1/models/x/versions/1.0.0", DEPLOY, ErrorShape.V1),
    ("POST", "/docs", DEPLOY, ErrorShape.V1),
    ("GET", "/docs/assets", READ, ErrorShape.V1),
    # Traversal: ".." never steps back to another route.
    ("POST", "/v1/models/iris/../other/predict", DEPLOY, ErrorShape.V1),
    ("POST", "/v1/models/iris/predict/../versions/1.0.0/stage", DEPLOY, ErrorShape.V1),
    ("POST", "/v2/models/iris/../../v1/keys", DEPLOY, ErrorShape.V2),
    ("GET", "/docs/../v1/models", READ, ErrorShape.V1),
])
def test_unknown_paths_name_no_route(method: str, path: str, needs: set[Permission],
                                     shape: ErrorShape) -> None:
    route = parse(method, path)
    assert route.protocol is None
    assert route.action is Action.NOT_FOUND
    assert (route.model, route.version_ref) == (None, None)
    assert set(route.permissions) == needs
    assert route.error_shape is shape
    assert not route.is_prediction


def test_dots_are_names_not_steps() -> None:
    # The decoded path of /v1/models/%2e%2e/predict: a model called "..", which the
    # predictor does not know (404), never the parent of anything.
    route = parse("POST", "/v1/models/../predict")
    assert (route.action, route.model, route.version_ref) == (Action.PREDICT, "..", None)
    route = parse("POST", "/v2/models/iris/versions/./infer")
    assert (route.action, route.model, route.version_ref) == (Action.INFER, "iris", ".")


def test_percent_encoding_arrives_decoded() -> None:
    # ASGI paths are decoded: an encoded slash is a separator by then, and an encoded
    # name is an ordinary name.
    assert parse("POST", "/v1/models/iris/../other/predict").action is Action.NOT_FOUND
    route = parse("POST", "/v1/models/my model/predict")
    assert (route.action, route.model) == (Action.PREDICT, "my model")
    route = parse("POST", "/v1/models/iris%2fx/predict")
    assert (route.action, route.model) == (Action.PREDICT, "iris%2fx")


def test_trailing_and_leading_slashes_keep_the_fast_path() -> None:
    for path in ("/v1/models/iris/predict/", "//v1/models/iris/predict",
                 "/v1/models/iris/predict//"):
        route = parse("POST", path)
        assert (route.action, route.model, route.exact, route.is_prediction) == (
            Action.PREDICT, "iris", True, True), path
    assert parse("GET", "/v1/keys/").action is Action.KEYS
    assert parse("GET", "/healthz/").is_open


def test_empty_segments_collapse_for_the_permission_only() -> None:
    # No spelling of a path needs less than its canonical form ...
    keys = parse("GET", "//v1//keys")
    assert (keys.action, set(keys.permissions)) == (Action.KEYS, ADMIN)
    stage = parse("POST", "/v1/models//iris/versions/1.0.0//stage")
    assert (stage.action, set(stage.permissions)) == (Action.STAGE, DEPLOY)
    # ... and a prediction spelled with an empty segment inside is not served as one.
    predict = parse("POST", "/v1//models/iris/predict")
    assert (predict.action, predict.model, set(predict.permissions)) == (
        Action.PREDICT, "iris", PREDICT)
    assert not predict.exact
    assert not predict.is_prediction
    smuggled = parse("POST", "/v1/models//other/predict")
    assert (smuggled.model, smuggled.is_prediction) == ("other", False)


def test_the_empty_path_and_root() -> None:
    for path in ("", "/", "//"):
        assert parse("GET", path).action is Action.DOCS
        assert parse("POST", path).action is Action.NOT_FOUND


def test_server_options() -> None:
    unpinned = Routes()
    route = unpinned.parse("POST", "/invocations")
    assert (route.action, route.model) == (Action.INVOCATIONS, None)
    assert Routes(public_metrics=True).parse("GET", "/metrics").is_open
    assert not unpinned.parse("GET", "/metrics").is_open


def test_open_probes_whatever_the_method() -> None:
    # The framework answers 405 to a POST on a probe; no key is asked for first.
    for path in ("/healthz", "/readyz", "/ping", "/health", "/version", "/v2",
                 "/v2/health/live", "/v2/health/ready"):
        assert parse("POST", path).is_open, path


def test_routes_are_values() -> None:
    route = parse("POST", "/v1/models/iris/predict")
    assert route == parse("POST", "/v1/models/iris/predict")
    with pytest.raises(AttributeError):
        route.model = "other"  # type: ignore[misc]
