"""The Open Inference Protocol v2 routes on the real ASGI app: model metadata describes
exactly the outputs that infer answers, a request that names outputs gets those, and
every answer conforms to the protocol's own REST schemas (schemas/open_inference_rest.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from sklearn.linear_model import LinearRegression
from tests.fixtures_models import iris, iris_example, iris_model
from tests.serving.conftest import serve

from modelhost import Client
from modelhost.serving.protocols.v2 import HEADER_LENGTH

pytestmark = pytest.mark.anyio

ROWS = 4
IRIS_OUTPUTS = ["predict", "predict_proba"]


def matrix_request(outputs: list[dict[str, Any]] | None = None, *,
                   rows: int = ROWS) -> dict[str, Any]:
    """One [rows, 4] FP64 input holding the iris columns in order, as plain JSON."""
    values = iris_example(rows=rows).to_numpy(dtype=np.float64)
    doc: dict[str, Any] = {"id": "contract", "inputs": [
        {"name": "input-0", "shape": [rows, 4], "datatype": "FP64",
         "data": values.reshape(-1).tolist()}]}
    if outputs is not None:
        doc["outputs"] = outputs
    return doc


def triton_request(outputs: list[tuple[str, bool]]) -> tuple[bytes, dict[str, str]]:
    """The body and headers tritonclient sends for the iris matrix and these outputs
    (name, binary)."""
    tensor = triton.InferInput("input-0", [ROWS, 4], "FP64")
    tensor.set_data_from_numpy(iris_example(rows=ROWS).to_numpy(dtype=np.float64))
    requested = [triton.InferRequestedOutput(name, binary_data=binary)
                 for name, binary in outputs]
    body, json_size = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=requested, request_id="named")
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers[HEADER_LENGTH] = str(json_size)
    return body, headers


def triton_result(content: bytes, headers: Any) -> Any:
    length = headers.get(HEADER_LENGTH)
    return triton.InferenceServerClient.parse_response_body(
        content, header_length=int(length) if length else None)


def fits(declared: list[int], shape: list[int]) -> bool:
    """Whether an answered shape fits a metadata shape (-1 is any size)."""
    return len(declared) == len(shape) and all(d in (-1, s) for d, s in zip(declared, shape,
                                                                            strict=True))


async def test_metadata_lists_the_outputs_infer_answers(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        for base in ("/v2/models/iris", "/v2/models/iris/versions/1.0.0",
                     "/v2/models/iris/versions/1.0.1"):
            meta = (await http.get(base)).json()
            assert [o["name"] for o in meta["outputs"]] == IRIS_OUTPUTS, meta
            assert meta["outputs"] == [
                {"name": "predict", "datatype": "INT64", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]}]
            response = await http.post(f"{base}/infer", json=matrix_request())
            assert response.status_code == 200, response.text
            answered = response.json()["outputs"]
            assert [(o["name"], o["datatype"]) for o in answered] == [
                (o["name"], o["datatype"]) for o in meta["outputs"]]
            for declared, output in zip(meta["outputs"], answered, strict=True):
                assert fits(declared["shape"], output["shape"]), (declared, output)
            # Each output that metadata lists can be asked for by that name.
            for declared in meta["outputs"]:
                named = await http.post(f"{base}/infer",
                                        json=matrix_request([{"name": declared["name"]}]))
                assert named.status_code == 200, named.text
                assert [o["name"] for o in named.json()["outputs"]] == [declared["name"]]


@pytest.mark.parametrize("names", [["predict_proba"], ["predict_proba", "predict"],
                                   ["predict", "predict_proba"], ["predict"]])
async def test_named_outputs_come_back_exactly_in_order(iris_client: Client,
                                                        names: list[str]) -> None:
    X = iris_example(rows=ROWS)
    model = iris_model()
    async with serve(iris_client) as (_, http):
        # All JSON, all binary (tritonclient's default), and the first binary only.
        for binary in ([False] * len(names), [True] * len(names),
                       [True] + [False] * (len(names) - 1)):
            body, headers = triton_request(list(zip(names, binary, strict=True)))
            response = await http.post("/v2/models/iris/versions/1.0.0/infer", content=body,
                                       headers=headers)
            assert response.status_code == 200, response.text
            result = triton_result(response.content, response.headers)
            outputs = result.get_response()["outputs"]
            assert [o["name"] for o in outputs] == names
            assert ["binary_data_size" in o.get("parameters", {}) for o in outputs] == binary
            if "predict" in names:
                assert result.as_numpy("predict").tolist() == model.predict(X).tolist()
            if "predict_proba" in names:
                assert np.allclose(result.as_numpy("predict_proba"), model.predict_proba(X),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("unknown", ["0", "probabilities", "PREDICT"])
async def test_an_unknown_output_is_a_400_naming_the_outputs(iris_client: Client,
                                                             unknown: str) -> None:
    async with serve(iris_client) as (_, http):
        for base in ("/v2/models/iris", "/v2/models/iris/versions/1.0.1"):
            response = await http.post(f"{base}/infer", json=matrix_request(
                [{"name": "predict"}, {"name": unknown}]))
            assert response.status_code == 400, response.text
            assert response.json() == {"error": (
                f"requested output {unknown!r} does not exist; the outputs of this model "
                "are: predict, predict_proba")}


async def test_a_model_without_probabilities_has_one_output(iris_client: Client) -> None:
    X, _ = iris()
    features = X.drop(columns="petal_width")
    regressor = LinearRegression().fit(features, X["petal_width"])
    iris_client.registry.register(regressor, name="petal", input_example=features.head(3))
    async with serve(iris_client) as (_, http):
        meta = (await http.get("/v2/models/petal/versions/1.0.0")).json()
        assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
        rows = features.head(2).to_numpy(dtype=np.float64)
        request = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                               "data": rows.reshape(-1).tolist()}]}
        answer = await http.post("/v2/models/petal/versions/1.0.0/infer", json=request)
        assert answer.status_code == 200, answer.text
        assert [(o["name"], o["datatype"]) for o in answer.json()["outputs"]] == [
            ("predict", "FP64")]
        refused = await http.post("/v2/models/petal/versions/1.0.0/infer",
                                  json={**request, "outputs": [{"name": "predict_proba"}]})
        assert refused.status_code == 400
        assert refused.json() == {"error": "requested output 'predict_proba' does not exist; "
                                           "the outputs of this model are: predict"}


# --- every /v2 answer against the protocol's own REST schemas ---------------------------
#
# schemas/open_inference_rest.yaml is the Open Inference Protocol's OpenAPI document. Its
# paths are the versioned forms (`/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}...`);
# inference_rest.md gives the unversioned ones the same objects. The health and model
# ready operations declare no body in the YAML: their objects come from inference_rest.md
# ($live_server_response, $ready_model_response; KServe and Triton answer {"ready": ...}
# for the server). An error answers the operation's declared error schema, or, where it
# declares none, the error object inference_rest.md gives its kind of request.

SPEC = yaml.safe_load((Path(__file__).parent / "schemas" / "open_inference_rest.yaml")
                      .read_text(encoding="utf-8"))
_SPEC_URI = "urn:open-inference-rest"
_REGISTRY: Registry[Any] = Registry().with_resource(
    _SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT4))
_MODEL = "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}"
_FROM_MARKDOWN = {
    "live": {"type": "object", "required": ["live"],
             "properties": {"live": {"type": "boolean"}}},
    "ready": {"type": "object", "required": ["ready"],
              "properties": {"ready": {"type": "boolean"}}},
    "model_ready": {"type": "object", "required": ["name", "ready"],
                    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
}


def spec_operation(path: str) -> tuple[str, str]:
    """The spec's (path, kind) for one of our routes; kind names its error object."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts == ["v2"]:
        return "/v2/", "metadata_server"
    if parts[:2] == ["v2", "health"]:
        return f"/v2/health/{parts[2]}", parts[2]
    assert parts[:2] == ["v2", "models"] and len(parts) >= 3, path
    rest = parts[3:]
    if rest[:1] == ["versions"]:
        rest = rest[2:]
    if rest == []:
        return _MODEL, "metadata_model"
    if rest == ["ready"]:
        return f"{_MODEL}/ready", "model_ready"
    assert rest == ["infer"], path
    return f"{_MODEL}/infer", "inference"


def response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    spec_path, kind = spec_operation(path)
    # A wrong method on an infer route (405) answers that route's error object.
    operation = SPEC["paths"][spec_path]["post" if kind == "inference" else "get"]
    responses = operation["responses"]
    if status < 400 or kind in ("live", "ready"):  # probes answer 503 with their object
        declared = responses.get(str(status), responses["200"])
        content = declared.get("content")
        if content is None:
            return _FROM_MARKDOWN[kind]
        return content["application/json"]["schema"]  # type: ignore[no-any-return]
    declared = responses.get("400", {}).get("content")
    if declared is not None:
        return declared["application/json"]["schema"]  # type: ignore[no-any-return]
    error = "metadata_model" if kind == "model_ready" else kind
    return {"$ref": f"#/components/schemas/{error}_error_response"}


def schema_problems(document: Any, schema: dict[str, Any]) -> list[str]:
    root = {**schema, "$ref": _SPEC_URI + schema["$ref"]} if "$ref" in schema else schema
    validator = Draft4Validator(root, registry=_REGISTRY)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(document)]


def json_document(response: Any) -> Any:
    """The JSON of an answer; with Triton's binary extension, its JSON header with each
    binary output's ``data`` decoded from the binary part (as tritonclient reads it)."""
    length = response.headers.get(HEADER_LENGTH)
    if length is None:
        assert response.headers["content-type"].startswith("application/json"), response
        return response.json()
    header = orjson.loads(response.content[:int(length)])
    result = triton_result(response.content, response.headers)
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            assert "data" not in output, output
            assert isinstance(size, int) and size >= 0, output
            values = result.as_numpy(output["name"]).reshape(-1)
            output["data"] = [v.decode() if isinstance(v, bytes) else v
                              for v in values.tolist()]
    return header


def assert_conforms(method: str, path: str, response: Any) -> None:
    document = json_document(response)
    problems = schema_problems(document, response_schema(method, path, response.status_code))
    assert not problems, (method, path, response.status_code, document, problems)
    if response.status_code >= 400 and not path.startswith("/v2/health"):
        assert set(document) == {"error"} and isinstance(document["error"], str), document


V2_CASES: list[tuple[str, str, Any, int]] = [
    ("GET", "/v2", None, 200),
    ("GET", "/v2/", None, 200),
    ("GET", "/v2/health/live", None, 200),
    ("GET", "/v2/health/ready", None, 200),
    ("GET", "/v2/models/iris", None, 200),
    ("GET", "/v2/models/iris/versions/1.0.1", None, 200),
    ("GET", "/v2/models/iris/ready", None, 200),
    ("GET", "/v2/models/iris/versions/1.0.1/ready", None, 200),
    ("POST", "/v2/models/iris/infer", matrix_request(), 200),
    ("POST", "/v2/models/iris/versions/1.0.1/infer", matrix_request(), 200),
    ("POST", "/v2/models/iris/infer", {"inputs": [
        {"name": c, "shape": [2], "datatype": "FP64", "data": iris_example(rows=2)[c].tolist()}
        for c in iris_example().columns]}, 200),
    ("POST", "/v2/models/iris/infer", matrix_request([{"name": "predict_proba"}]), 200),
    ("POST", "/v2/models/iris/infer", matrix_request(
        [{"name": "predict_proba", "parameters": {"binary_data": True}},
         {"name": "predict"}]), 200),
    # errors
    ("GET", "/v2/models/nope", None, 404),
    ("GET", "/v2/models/iris/versions/9.9.9", None, 404),
    ("GET", "/v2/models/nope/ready", None, 404),
    ("GET", "/v2/models/iris/versions/9.9.9/ready", None, 404),
    ("POST", "/v2/models/nope/infer", matrix_request(), 404),
    ("POST", "/v2/models/iris/versions/9.9.9/infer", matrix_request(), 404),
    ("POST", "/v2/models/iris/infer", matrix_request([{"name": "0"}]), 400),
    ("POST", "/v2/models/iris/infer", b'{"inputs": [', 400),
    ("POST", "/v2/models/iris/infer", {"inputs": []}, 422),
    ("POST", "/v2/models/iris/infer", {"inputs": [
        {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]},
     422),
    ("GET", "/v2/models/iris/infer", None, 405),
    ("GET", "/v2/models/iris/versions/1.0.1/infer", None, 405),
    ("POST", "/v2/models/iris", {}, 405),
    ("GET", "/v2/models/iris/versions", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), V2_CASES,
                         ids=[f"{m} {p} {s}" for m, p, _, s in V2_CASES])
async def test_every_v2_answer_conforms_to_the_protocol(iris_client: Client, method: str,
                                                         path: str, body: Any,
                                                         status: int) -> None:
    async with serve(iris_client) as (_, http):
        content = body if isinstance(body, bytes) else None
        response = await http.request(method, path, content=content,
                                      json=None if content is not None else body,
                                      headers={"Content-Type": "application/json"})
        assert response.status_code == status, response.text
        assert_conforms(method, path, response)
        if status == 405:
            assert response.headers["allow"], response.headers


async def test_tritonclient_requests_get_conforming_answers(iris_client: Client) -> None:
    async with serve(iris_client) as (_, http):
        for outputs in ([("predict", True), ("predict_proba", True)],
                        [("predict_proba", False), ("predict", True)]):
            body, headers = triton_request(outputs)
            path = "/v2/models/iris/versions/1.0.0/infer"
            response = await http.post(path, content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert_conforms("POST", path, response)


async def test_refusals_by_the_key_guard_conform(iris_client: Client) -> None:
    async with serve(iris_client, auth=True) as (_, http):
        for method, path, body in (("GET", "/v2/models/iris", None),
                                   ("GET", "/v2/models/iris/versions/1.0.0/ready", None),
                                   ("POST", "/v2/models/iris/infer", matrix_request())):
            response = await http.request(method, path, json=body)
            assert response.status_code == 401, response.text
            assert_conforms(method, path, response)
        for path in ("/v2", "/v2/", "/v2/health/live", "/v2/health/ready"):  # open probes
            response = await http.get(path)
            assert response.status_code == 200, (path, response.text)
            assert_conforms("GET", path, response)


def test_the_schemas_catch_what_the_protocol_forbids() -> None:
    """The validation above can fail: these answers break the protocol's schemas."""
    infer = "/v2/models/m/infer"
    assert schema_problems({"error": {"code": "not_found", "message": "x"}},
                           response_schema("POST", infer, 404))
    assert schema_problems({"error": {"code": "not_found"}},
                           response_schema("GET", "/v2/models/m", 404))
    assert schema_problems({"model_name": "m", "outputs": [
        {"name": "predict", "shape": [1], "data": [1]}]}, response_schema("POST", infer, 200))
    assert schema_problems({"model_name": "m", "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": ["1"], "data": [1]}]},
        response_schema("POST", infer, 200))
    assert schema_problems({"name": "m", "outputs": [{"name": "0", "shape": [-1]}]},
                           response_schema("GET", "/v2/models/m/versions/1", 200))
    assert schema_problems({"name": "modelhost"}, response_schema("GET", "/v2", 200))
    assert schema_problems({"live": "yes"}, response_schema("GET", "/v2/health/live", 200))
    assert not schema_problems({"model_name": "m", "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": [1], "data": [1]}]},
        response_schema("POST", infer, 200))
