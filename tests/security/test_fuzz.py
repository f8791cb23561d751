"""Property-based fuzzing of the prediction routes from the server's own OpenAPI schema.

The schema comes from ``GET /openapi.json`` of the real ASGI app (with
``ServerOptions(auth=True)`` and an admin key), including the per-model path
``/v1/models/iris/predict`` that the server builds from the model's signature.
schemathesis 4 generates requests from it, schema-valid (positive) and schema-breaking
(negative), and sends them in-process (``schemathesis.openapi.from_asgi``; the app's
lifespan runs in schemathesis' event-loop thread).

The server documents no request body for the Open Inference v2 ``infer`` routes, so the
test adds one, written from the protocol's spec (tensors named after the signature's
columns, with a well-formed request as the example, always sent first by schema-valid
fuzzing of the routes that reach the model); everything else is the server's.

Every answer must be: no server error (a 503 only with Retry-After), the protocol's error
shape without tracebacks or paths, the security headers, and for 2xx a body that
conforms to the documented response schema. Generation is bounded and derandomized
(the same examples on every run) so that CI is repeatable and quick.
"""

from __future__ import annotations

import collections
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from modelhost import Client, Settings
from modelhost.serving import Limits, PoolOptions, ServerOptions, create_app
from tests.fixtures_models import iris_example, iris_model

# The server process runs with the default warning filters; under pytest's "error"
# filter numpy's overflow warnings inside the model would turn into exceptions (and 500s)
# that a real server never gives.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

EXAMPLES = 60  # per operation and generation mode
MAX_BODY_BYTES = 65536
MAX_ROWS = 100
COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate,
                                                     Phase.shrink))
CONFIG = schemathesis.Config()  # explicit: not whatever schemathesis.toml lies around
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
                    "referrer-policy": "no-referrer", "cache-control": "no-store"}
LEAKS = ("Traceback", 'File "', "site-packages", ".venv", "/work/", "/tmp/", "sqlite",
         "SELECT ", "sqlalchemy", "Exception", "object at 0x")

OPERATIONS = (
    ("POST", "/v1/models/iris/predict"),  # built from the signature
    ("POST", "/v1/models/{name}/predict"),
    ("POST", "/v1/models/{name}/versions/{version}/predict"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
)

# Where schema-valid requests can satisfy the signature (the generic v1 schema allows any
# records, which a 4-column model refuses).
REACH_THE_MODEL = frozenset({"/v1/models/iris/predict", "/v2/models/{name}/infer",
                             "/v2/models/{name}/versions/{version}/infer"})


# --- the app and its schema ---------------------------------------------------------------


def _tensor_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string", "enum": [*COLUMNS, "x"]},
                "shape": {"type": "array", "maxItems": 3,
                          "items": {"type": "integer", "minimum": 0, "maximum": 4}},
                "datatype": {"type": "string",
                             "enum": ["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES"]},
                "parameters": {"type": "object"},
                "data": {"type": "array", "maxItems": 8,
                         "items": {"type": ["number", "integer", "boolean", "string"]}}}}


def v2_request_schema() -> dict[str, Any]:
    """The Open Inference Protocol's inference request, with the iris signature's
    well-formed request as its example (sent first, in hypothesis' explicit phase)."""
    outputs = {"type": "array", "items": {"type": "object", "required": ["name"],
                                          "properties": {"name": {
                                              "type": "string",
                                              "enum": ["predict", "predict_proba"]}}}}
    schema = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 6, "items": _tensor_schema()},
        "outputs": outputs}}
    example = {"id": "example", "inputs": [
        {"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
        for c, v in zip(COLUMNS, (5.1, 3.5, 1.4, 0.2), strict=True)]}
    return {"required": True, "content": {"application/json": {"schema": schema,
                                                               "example": example}}}


@dataclass
class Served:
    client: Client
    headers: dict[str, str]
    raw: dict[str, Any]  # the server's OpenAPI document, plus the v2 request bodies


@dataclass
class Fuzz:
    schema: Any
    headers: dict[str, str]


def _app(client: Client) -> Any:
    return create_app(client.registry, keys=client.keys, audit=client.audit, options=(
        ServerOptions(auth=True, limits=Limits(max_body_bytes=MAX_BODY_BYTES,
                                               max_rows=MAX_ROWS),
                      pool=PoolOptions(reload_interval_s=30))))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    client = Client(Settings(home=home, db_url=f"sqlite:///{home / 'modelhost.db'}",
                             artifacts=str(home / "artifacts")))
    try:
        registry = client.registry
        registry.register(iris_model(), name="iris", input_example=iris_example())
        registry.register(iris_model(C=0.01), name="iris", input_example=iris_example())
        registry.transition("iris", "1.0.0", "staging")
        registry.transition("iris", "1.0.0", "production")
        registry.set_alias("iris", "champion", "1.0.1")
        secret = client.keys.create(name="fuzz", role="admin").secret
        headers = {"Authorization": f"Bearer {secret}"}
        try:
            loaded = schemathesis.openapi.from_asgi("/openapi.json", _app(client),
                                                    headers=headers, config=CONFIG)
        finally:
            asgi.shutdown_lifespans()
        raw = copy.deepcopy(loaded.raw_schema)
        assert "/v1/models/iris/predict" in raw["paths"]
        for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
            assert "requestBody" not in raw["paths"][path]["post"]  # else use the server's
            raw["paths"][path]["post"]["requestBody"] = v2_request_schema()
        yield Served(client=client, headers=headers, raw=raw)
    finally:
        client.close()


@pytest.fixture
def fuzz(served: Served) -> Fuzz:
    """A fresh app per test: schemathesis' pytest plugin ends every ASGI lifespan it
    started when a test ends."""
    schema = schemathesis.openapi.from_dict(copy.deepcopy(served.raw), config=CONFIG)
    schema.app = _app(served.client)
    return Fuzz(schema=schema, headers=served.headers)


def _strategy(operation: Any, path: str, mode: GenerationMode) -> st.SearchStrategy[Any]:
    """Cases with fuzzed path parameters, and (more often) with the real model and
    its versions and aliases, so that the fuzzing reaches the model."""
    if "{" not in path:
        return operation.as_strategy(mode)  # type: ignore[no-any-return]
    refs = st.sampled_from(["1.0.0", "1.0.1", "champion", "latest"])
    real = refs.flatmap(lambda ref: operation.as_strategy(mode, path_parameters={
        k: v for k, v in (("name", "iris"), ("version", ref)) if "{" + k + "}" in path}))
    return st.one_of(real, real, operation.as_strategy(mode))


def _well_formed_first(operation: Any, path: str, mode: GenerationMode) -> Any:
    """For schema-valid fuzzing of a route that can reach the model: the well-formed
    request is sent first (hypothesis' explicit phase), whatever the generated cases
    turn out to be; other routes and modes get no explicit case."""
    if mode is not GenerationMode.POSITIVE or path not in REACH_THE_MODEL:
        return lambda test: test
    if path.startswith("/v2/"):
        body: Any = v2_request_schema()["content"]["application/json"]["example"]
    else:
        body = {"inputs": [dict(zip(COLUMNS, (5.1, 3.5, 1.4, 0.2), strict=True))]}
    params = {k: v for k, v in (("name", "iris"), ("version", "1.0.0"))
              if "{" + k + "}" in path}
    return hypothesis.example(case=operation.Case(path_parameters=params, body=body,
                                                  media_type="application/json"))


# --- checks -------------------------------------------------------------------------------------


def _nulls_in_outputs(document: Any) -> bool:
    """A 200 whose probabilities are NaN (sent as null): the known bug tested below."""
    if not isinstance(document, dict):
        return False
    values: list[Any] = [v for row in document.get("probabilities") or [] for v in row]
    for output in document.get("outputs") or []:
        values += output.get("data") or []
    return any(v is None for v in values)


def problems_with(response: Any, *, v2: bool, home: Path | None = None,
                  sent: str = "") -> list[str]:
    """What is wrong with an answer. ``sent``: the request's own text; a leak word in it
    (a column named 'sqlite') comes back in the error that names it, and is no leak."""
    problems = []
    status = response.status_code
    if status >= 500 and not (status == 503 and "retry-after" in {
            k.lower() for k in response.headers}):
        problems.append(f"server error {status}")
    headers = {k.lower(): v[0] if isinstance(v, list) else v
               for k, v in response.headers.items()}
    for name, value in SECURITY_HEADERS.items():
        if headers.get(name) != value:
            problems.append(f"header {name}: {headers.get(name)!r}")
    text = response.text
    for leak in (*LEAKS, *([str(home)] if home else [])):
        if leak in sent:
            continue
        if leak in text or leak in str(response.headers):
            problems.append(f"leak: {leak!r}")
    try:
        document = json.loads(response.content)
    except ValueError:
        return [*problems, f"body is not JSON: {response.content[:200]!r}"]
    if status >= 400:
        if v2 and isinstance(document.get("error"), str):
            return problems
        error = document.get("error") if isinstance(document, dict) else None
        if not (isinstance(error, dict) and {"code", "message", "request_id"} <= set(error)):
            problems.append(f"not an error body: {document!r:.300}")
    return problems


def _call(case: Any, fuzz: Fuzz) -> Any:
    """Send the case with our admin key: the schema declares the key schemes, and the
    values schemathesis generates for them would otherwise replace it."""
    case.headers = {k: v for k, v in (case.headers or {}).items()
                    if k.lower() not in ("authorization", "x-api-key")}
    return case.call(headers=fuzz.headers)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[p for _, p in OPERATIONS])
def test_prediction_routes_survive_fuzzing(fuzz: Fuzz, method: str, path: str,
                                           mode: GenerationMode) -> None:
    operation = fuzz.schema[path][method]
    v2 = path.startswith("/v2/")
    statuses: collections.Counter[int] = collections.Counter()

    @SETTINGS
    @given(case=_strategy(operation, path, mode))
    @_well_formed_first(operation, path, mode)
    def one(case: Any) -> None:
        response = _call(case, fuzz)
        statuses[response.status_code] += 1
        sent = json.dumps([case.body, case.path_parameters], default=str)
        problems = problems_with(response, v2=v2, sent=sent)
        assert not problems, (case.body, response.status_code, response.text[:500], problems)
        if 200 <= response.status_code < 300 and not _nulls_in_outputs(response.json()):
            case.validate_response(response, checks=[response_schema_conformance])

    one()
    assert sum(statuses.values()) >= EXAMPLES // 2, statuses
    if mode is GenerationMode.POSITIVE and path in REACH_THE_MODEL:
        # Schema-valid requests got past validation to the model at least sometimes.
        assert statuses[200] > 0, statuses


# --- bugs the fuzzing above found once (fixed; kept as regression tests) -----------------


def test_schema_valid_requests_are_accepted(fuzz: Fuzz) -> None:
    operation = fuzz.schema["/v1/models/iris/predict"]["POST"]

    @SETTINGS
    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    def one(case: Any) -> None:
        response = _call(case, fuzz)
        too_many = len(case.body["inputs"]) > MAX_ROWS
        if response.status_code == 422:  # values so large that the model overflows
            assert "no finite result" in response.json()["error"]["message"], response.text
            return
        assert response.status_code == (413 if too_many else 200), (case.body, response.text)

    one()


def test_overflowing_inputs_never_give_null_probabilities(fuzz: Fuzz) -> None:
    big = 1.7976931348623157e308
    row = dict.fromkeys(COLUMNS, big)
    client = asgi.get_client(fuzz.schema.app)
    with client:
        v1 = client.post("/v1/models/iris/predict", json={"inputs": [row]},
                         headers=fuzz.headers)
        v2 = client.post("/v2/models/iris/infer", headers=fuzz.headers, json={"inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [big]} for c in COLUMNS]})
    for response in (v1, v2):
        assert response.status_code < 500 or (response.status_code == 500 and \
            response.json()["error"]["code"] == "prediction_failed"), response.text
        if response.status_code == 200:
            assert not _nulls_in_outputs(response.json()), response.text
