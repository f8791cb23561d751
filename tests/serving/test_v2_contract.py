"""The Open Inference Protocol v2 routes on the real ASGI app: model metadata describes
exactly the outputs that infer answers, and a request that names outputs gets those."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
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
