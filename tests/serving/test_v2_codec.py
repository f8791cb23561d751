"""The Open Inference Protocol codec, checked against the real tritonclient HTTP client."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from modelhost.entities import ColumnSpec, ColumnType, Signature, TensorSpec
from modelhost.errors import InvalidInputError, MalformedRequestError, PredictionFailedError
from modelhost.serving.protocols.v2 import (
    DATATYPES,
    HEADER_LENGTH,
    InferRequest,
    OutputSpec,
    RequestedOutput,
    Tensor,
    build_infer_response,
    check_requested,
    conform,
    error_body,
    model_metadata,
    model_outputs,
    parse_infer_request,
    server_metadata,
    to_model_input,
)
from modelhost.signature.validate import InputValidator

Client = triton.InferenceServerClient

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 255], [7, 8, 9]], dtype=np.uint8),
    "UINT16": np.array([[0, 1, 65535], [7, 8, 9]], dtype=np.uint16),
    "UINT32": np.array([[0, 1, 2**32 - 1], [7, 8, 9]], dtype=np.uint32),
    "UINT64": np.array([[0, 1, 2**64 - 1], [7, 8, 9]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127], [7, 8, 9]], dtype=np.int8),
    "INT16": np.array([[-(2**15), 0, 2**15 - 1], [7, 8, 9]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [7, 8, 9]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [7, 8, 9]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.25, 65504.0], [1e-3, 2.0, 3.0]], dtype=np.float16),
    "FP32": np.array([[0.1, -1.5, 3.4e38], [1e-30, 2.0, 3.0]], dtype=np.float32),
    "FP64": np.array([[0.1, -1.5, 1.7e308], [5e-324, 2.0, 3.0]], dtype=np.float64),
    "BYTES": np.array([["a", "", "héllo"], ["x y", "🙂", "z"]], dtype=object),
}


def client_body(arrays: dict[str, np.ndarray], *, binary: bool, outputs: Any = None,
                request_id: str = "") -> tuple[bytes, int | None]:
    inputs = []
    for name, array in arrays.items():  # each input is named after its datatype
        item = triton.InferInput(name, list(array.shape), name)
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    body, json_size = Client.generate_request_body(inputs, outputs=outputs,
                                                   request_id=request_id)
    return body, json_size


def parse_doc(doc: dict[str, Any], **kwargs: Any) -> InferRequest:
    return parse_infer_request(orjson.dumps(doc), header_length=None, **kwargs)


def one_input(datatype: str, shape: list[int], data: Any, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data,
                        **extra}]}


def client_result(body: bytes, headers: dict[str, str]) -> Any:
    length = headers.get(HEADER_LENGTH)
    return Client.parse_response_body(body, header_length=int(length) if length else None)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object
        assert got.tolist() == want.tolist()
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# --- requests from tritonclient -----------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_from_tritonclient(datatype: str, binary: bool) -> None:
    array = SAMPLES[datatype]
    body, json_size = client_body({datatype: array}, binary=binary)
    assert (json_size is not None) is binary

    request = parse_infer_request(body, header_length=json_size)

    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == (datatype, datatype, (2, 3))
    assert_same(tensor.data, array.astype(DATATYPES[datatype]))
    assert tensor.data.flags.writeable


def test_several_binary_and_json_inputs_in_one_request() -> None:
    a, b = SAMPLES["FP32"], SAMPLES["BYTES"]
    inputs = [triton.InferInput(name, [2, 3], name) for name in ("FP32", "BYTES", "INT64")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    inputs[2].set_data_from_numpy(SAMPLES["INT64"], binary_data=False)
    body, json_size = Client.generate_request_body(inputs)

    request = parse_infer_request(body, header_length=json_size)

    assert [t.name for t in request.inputs] == ["FP32", "BYTES", "INT64"]
    assert_same(request.inputs[0].data, a)
    assert_same(request.inputs[1].data, b)
    assert_same(request.inputs[2].data, SAMPLES["INT64"])


def test_id_outputs_and_binary_defaults_from_tritonclient() -> None:
    outputs = [triton.InferRequestedOutput("label", binary_data=False),
               triton.InferRequestedOutput("proba", binary_data=True)]
    body, size = client_body({"FP64": SAMPLES["FP64"]}, binary=True, outputs=outputs,
                             request_id="req-42")

    request = parse_infer_request(body, header_length=size)

    assert request.id == "req-42"
    assert request.outputs == [RequestedOutput("label", False), RequestedOutput("proba", True)]
    assert request.binary_output_default is False

    body, size = client_body({"FP64": SAMPLES["FP64"]}, binary=False)
    request = parse_infer_request(body, header_length=size)
    assert request.id is None
    assert request.outputs == []
    assert request.binary_output_default is True  # tritonclient asks for binary outputs


def test_binary_bytes_stay_bytes_unless_utf8() -> None:
    raw = np.array([b"\xff\xd8\xff", b"ok"], dtype=object)
    body, size = client_body({"BYTES": raw}, binary=True)
    (tensor,) = parse_infer_request(body, header_length=size).inputs
    assert tensor.data.tolist() == [b"\xff\xd8\xff", b"ok"]

    text = np.array([b"caf\xc3\xa9", b""], dtype=object)
    body, size = client_body({"BYTES": text}, binary=True)
    (tensor,) = parse_infer_request(body, header_length=size).inputs
    assert tensor.data.tolist() == ["café", ""]


def test_bytes_wire_format_is_length_prefixed() -> None:
    payload = struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0) + struct.pack("<I", 1) + b"c"
    header = orjson.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [3],
                                       "parameters": {"binary_data_size": len(payload)}}]})
    request = parse_infer_request(header + payload, header_length=len(header))
    assert request.inputs[0].data.tolist() == ["ab", "", "c"]


def test_nan_and_infinity_arrive_through_binary_fp() -> None:
    array = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    body, size = client_body({"FP32": array}, binary=True)
    data = parse_infer_request(body, header_length=size).inputs[0].data
    assert math.isnan(data[0]) and data[1] == np.inf and data[2] == -np.inf


def test_empty_tensor() -> None:
    for binary in (False, True):
        body, size = client_body({"FP32": np.zeros((0, 3), dtype=np.float32)}, binary=binary)
        assert parse_infer_request(body, header_length=size).inputs[0].data.shape == (0, 3)


# --- hand-written JSON requests ----------------------------------------------------------


@pytest.mark.parametrize("data", [[1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]],
                                  [[[1], [2], [3]], [[4], [5], [6]]], [[1, 2], [3, 4, 5, 6]],
                                  [1, [2, 3], [[4, 5], [6]]]],
                         ids=["flat", "nested", "deeper", "ragged", "mixed"])
def test_flat_and_nested_data(data: Any) -> None:
    request = parse_doc(one_input("INT32", [2, 3], data))
    assert_same(request.inputs[0].data, np.arange(1, 7, dtype=np.int32).reshape(2, 3))


def test_ints_are_numbers_for_fp_and_scalars_have_empty_shape() -> None:
    assert parse_doc(one_input("FP64", [2], [1, 2.5])).inputs[0].data.tolist() == [1.0, 2.5]
    tensor = parse_doc(one_input("INT64", [], [7])).inputs[0]
    assert tensor.shape == () and tensor.data.item() == 7


def test_request_parameters_and_id_are_kept() -> None:
    doc = {"id": "abc", "parameters": {"k": [1, {"a": 2}]}, **one_input("FP32", [1], [1.0])}
    request = parse_doc(doc)
    assert request.id == "abc"
    assert request.parameters == {"k": [1, {"a": 2}]}
    assert request.inputs[0].parameters == {}


BAD_JSON: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("no inputs", {"id": "a"}, InvalidInputError, "has no 'inputs'"),
    ("empty inputs", {"inputs": []}, InvalidInputError, "non-empty list"),
    ("not an object", {"inputs": [1]}, InvalidInputError, "inputs[0] must be a JSON object"),
    ("no name", {"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]},
     InvalidInputError, "inputs[0] needs a non-empty string 'name'"),
    ("unknown datatype", one_input("BF16", [1], [1.0]), InvalidInputError,
     "input 'x' has unknown datatype 'BF16'; supported: BOOL,"),
    ("negative dim", one_input("FP32", [-1, 2], [1.0, 2.0]), InvalidInputError,
     "input 'x' has shape [-1, 2]: dimensions of a request tensor must be 0 or more"),
    ("shape not ints", one_input("FP32", [1.0], [1.0]), InvalidInputError,
     "input 'x' needs a 'shape' that is a list of integers"),
    ("too few", one_input("FP32", [2, 2], [1, 2, 3]), InvalidInputError,
     "input 'x' has 3 data elements but shape [2, 2] needs 4"),
    ("too many", one_input("FP32", [2], [[1, 2], [3]]), InvalidInputError,
     "input 'x' has 3 data elements but shape [2] needs 2"),
    ("data not a list", one_input("FP32", [], 1.0), InvalidInputError,
     "input 'x': 'data' must be a JSON array"),
    ("bool in INT", one_input("INT64", [2], [1, True]), InvalidInputError,
     "input 'x': element 1 is true (a boolean), but INT64 data must be integers"),
    ("float in INT", one_input("INT32", [2], [1, 2.0]), InvalidInputError,
     "input 'x': element 1 is 2.0 (a number with a fraction or exponent), but INT32 data"),
    ("UINT8 too big", one_input("UINT8", [2], [255, 256]), InvalidInputError,
     "input 'x': element 1 is 256, out of range for UINT8 (0..255)"),
    ("INT8 too small", one_input("INT8", [1], [-129]), InvalidInputError,
     "element 0 is -129, out of range for INT8 (-128..127)"),
    ("INT64 too big", one_input("INT64", [1], [2**63]), InvalidInputError,
     "element 0 is 9223372036854775808, out of range for INT64"),
    ("UINT64 negative", one_input("UINT64", [1], [-1]), InvalidInputError,
     "element 0 is -1, out of range for UINT64"),
    ("string in FP", one_input("FP32", [2], [1.0, "2"]), InvalidInputError,
     "input 'x': element 1 is '2' (a string), but FP32 data must be numbers"),
    ("null in FP", one_input("FP64", [1], [None]), InvalidInputError,
     "element 0 is null, but FP64 data must be numbers"),
    ("FP32 overflow", one_input("FP32", [1], [1e39]), InvalidInputError,
     "element 0 is 1e+39, out of range for FP32"),
    ("FP16 overflow", one_input("FP16", [1], [70000]), InvalidInputError,
     "out of range for FP16"),
    ("int in BOOL", one_input("BOOL", [1], [1]), InvalidInputError,
     "element 0 is 1 (an integer), but BOOL data must be true or false"),
    ("number in BYTES", one_input("BYTES", [1], [1]), InvalidInputError,
     "element 0 is 1 (an integer), but BYTES data must be strings"),
    ("object in data", one_input("FP32", [1], [{"a": 1}]), InvalidInputError,
     "element 0 is an object"),
    ("data and binary", one_input("FP32", [1], [1.0], parameters={"binary_data_size": 4}),
     InvalidInputError, "input 'x' has both 'data' and parameters.binary_data_size"),
    ("neither", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]},
     InvalidInputError, "input 'x' has neither 'data' nor parameters.binary_data_size"),
    ("binary without header",
     {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                  "parameters": {"binary_data_size": 4}}]},
     MalformedRequestError, "input 'x' declares binary_data_size but the request has no"),
    ("duplicate input", {"inputs": [one_input("FP32", [1], [1])["inputs"][0]] * 2},
     InvalidInputError, "input 'x' appears more than once"),
    ("id not a string", {"id": 5, **one_input("FP32", [1], [1])}, InvalidInputError,
     "'id' must be a string, got 5 (an integer)"),
    ("parameters not object", {"parameters": [], **one_input("FP32", [1], [1])},
     InvalidInputError, "'parameters' of the request must be a JSON object"),
    ("shared memory", one_input("FP32", [1], [1], parameters={"shared_memory_region": "r"}),
     InvalidInputError, "input 'x' uses shared memory"),
    ("classification", {**one_input("FP32", [1], [1]),
                        "outputs": [{"name": "y", "parameters": {"classification": 3}}]},
     InvalidInputError, "output 'y' asks for classification"),
    ("binary_data not bool", {**one_input("FP32", [1], [1]),
                              "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
     InvalidInputError, "output 'y': parameters.binary_data must be true or false"),
    ("duplicate output", {**one_input("FP32", [1], [1]),
                          "outputs": [{"name": "y"}, {"name": "y"}]},
     InvalidInputError, "output 'y' is requested more than once"),
]


@pytest.mark.parametrize(("doc", "error", "message"), [c[1:] for c in BAD_JSON],
                         ids=[c[0] for c in BAD_JSON])
def test_bad_json_requests(doc: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        parse_doc(doc)
    assert message in str(info.value)


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "the request body is empty"),
    ("not json", b"{inputs", "the request body is not valid JSON: "),
    ("not utf-8", b'{"id": "\xff"}', "the request body is not valid JSON"),
    ("NaN", b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[NaN]}]}',
     "NaN/Infinity literals are not JSON"),
    ("Infinity", b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[Infinity]}]}',
     "NaN/Infinity literals are not JSON"),
    ("-Infinity",
     b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[-Infinity]}]}',
     "NaN/Infinity literals are not JSON"),
    ("1e999", b'{"inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[1e999]}]}',
     "a number too large for a double"),
    ("depth 10000", b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":'
     + b"[" * 10_000 + b"1" + b"]" * 10_000 + b"}]}",
     "the request JSON is nested deeper than the limit of 64 levels"),
    ("deep data", b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":'
     + b"[" * 100 + b"1" + b"]" * 100 + b"}]}",
     "input 'x': 'data' makes the request JSON nest deeper than the limit of 64 levels"),
    ("deep mixed data", b'{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,'
     + b"[" * 100 + b"1" + b"]" * 100 + b"]}]}",
     "input 'x': 'data' makes the request JSON nest deeper than the limit of 64 levels"),
    ("deep parameters", b'{"parameters":{"a":' + b"[" * 100 + b"]" * 100
     + b'},"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}]}',
     "the request JSON is nested deeper than the limit of 64 levels"),
    ("deep input field", b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1],'
     b'"extra":' + b"[" * 100 + b"]" * 100 + b"}]}",
     "the request JSON is nested deeper than the limit of 64 levels"),
]


@pytest.mark.parametrize(("body", "message"), [c[1:] for c in BAD_BODIES],
                         ids=[c[0] for c in BAD_BODIES])
def test_unparseable_bodies(body: bytes, message: str) -> None:
    with pytest.raises(MalformedRequestError) as info:
        parse_infer_request(body, header_length=None)
    assert message in str(info.value)


def test_depth_limit_is_configurable_and_counts_from_the_request_object() -> None:
    data: Any = [1.0]
    for _ in range(59):  # data list at level 4, so 60 nested lists reach level 63 < 64
        data = [data]
    assert parse_doc(one_input("FP64", [1], data)).inputs[0].data.shape == (1,)
    with pytest.raises(MalformedRequestError, match="limit of 8 levels"):
        parse_doc(one_input("FP64", [1], data), max_depth=8)


def binary_request(datatype: str = "FP32", shape: tuple[int, ...] = (2, 2)) -> tuple[bytes, int]:
    array = np.arange(math.prod(shape)).reshape(shape).astype(DATATYPES[datatype])
    body, size = client_body({datatype: array}, binary=True)
    assert size is not None
    return body, size


def test_truncated_binary_data() -> None:
    body, size = binary_request()
    with pytest.raises(MalformedRequestError,
                       match=r"binary data of input 'FP32' is truncated: binary_data_size "
                             r"is 16 bytes but only 12 remain"):
        parse_infer_request(body[:-4], header_length=size)


def test_header_length_beyond_the_body() -> None:
    body, _ = binary_request()
    with pytest.raises(MalformedRequestError,
                       match=f"{HEADER_LENGTH} is {len(body) + 1} bytes but the body has only"):
        parse_infer_request(body, header_length=len(body) + 1)
    with pytest.raises(MalformedRequestError, match="must be a positive number"):
        parse_infer_request(body, header_length=0)


def test_header_length_that_cuts_the_json() -> None:
    body, size = binary_request()
    with pytest.raises(MalformedRequestError, match="not valid JSON"):
        parse_infer_request(body, header_length=size - 3)


def test_trailing_binary_bytes() -> None:
    body, size = binary_request()
    with pytest.raises(MalformedRequestError, match="4 bytes of binary data that no input"):
        parse_infer_request(body + b"\0\0\0\0", header_length=size)


def test_binary_size_that_does_not_fit_the_shape() -> None:
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3],
                                       "parameters": {"binary_data_size": 8}}]})
    with pytest.raises(InvalidInputError, match=r"input 'x': binary_data_size is 8 bytes but "
                                                 r"shape \[2, 3\] of FP32 needs 24 bytes"):
        parse_infer_request(header + bytes(8), header_length=len(header))


def test_binary_bool_must_be_zero_or_one() -> None:
    header = orjson.dumps({"inputs": [{"name": "b", "datatype": "BOOL", "shape": [3],
                                       "parameters": {"binary_data_size": 3}}]})
    with pytest.raises(InvalidInputError, match="binary BOOL element 2 is byte 2"):
        parse_infer_request(header + b"\x01\x00\x02", header_length=len(header))


@pytest.mark.parametrize(("payload", "error", "message"), [
    (struct.pack("<I", 1) + b"a" + b"\x01\x00", MalformedRequestError,
     "BYTES element 1 is truncated (its 4-byte length prefix is cut off)"),
    (struct.pack("<I", 9) + b"abc", MalformedRequestError,
     "BYTES element 0 is truncated: its prefix says 9 bytes but only 3 remain"),
    (struct.pack("<I", 1) + b"a", InvalidInputError,
     "input 's' holds 1 BYTES elements but shape [2] needs 2"),
])
def test_bad_binary_bytes(payload: bytes, error: type[Exception], message: str) -> None:
    header = orjson.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2],
                                       "parameters": {"binary_data_size": len(payload)}}]})
    with pytest.raises(error) as info:
        parse_infer_request(header + payload, header_length=len(header))
    assert message in str(info.value)


# --- responses read by tritonclient ------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_in_responses(binary: bool) -> None:
    outputs = list(SAMPLES.items())
    body, headers = build_infer_response(model_name="m", model_version="1.2.0",
                                         request_id="r1", outputs=outputs, requested=[],
                                         binary_default=binary)

    assert (HEADER_LENGTH in headers) is binary
    result = client_result(body, headers)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == \
        ("m", "1.2.0", "r1")
    for name, array in outputs:
        got = result.as_numpy(name)
        if name == "BYTES" and binary:  # tritonclient hands binary BYTES back as bytes
            got = np.vectorize(lambda b: b.decode(), otypes=[object])(got)
        assert_same(got, array)
        assert result.get_output(name)["datatype"] == name


def test_response_json_shape() -> None:
    body, headers = build_infer_response(
        model_name="m", model_version="1.0.0", request_id=None,
        outputs=[("y", np.array([[1.5, np.nan]], dtype=np.float32))], requested=[],
        binary_default=False, parameters={"cached": True})
    assert headers == {"Content-Type": "application/json"}
    assert orjson.loads(body) == {
        "model_name": "m", "model_version": "1.0.0", "parameters": {"cached": True},
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, None]}]}
    assert math.isnan(client_result(body, headers).as_numpy("y")[0, 1])


def test_requested_outputs_pick_order_and_format() -> None:
    outputs = [("label", np.array(["cat", "dog"], dtype=object)),
               ("proba", np.array([[0.9, 0.1], [0.2, 0.8]])), ("extra", np.array([1, 2]))]
    requested = [RequestedOutput("proba", True), RequestedOutput("label", False)]
    body, headers = build_infer_response(model_name="m", model_version="1.0.0",
                                         request_id="x", outputs=outputs,
                                         requested=requested, binary_default=False)

    header = orjson.loads(body[:int(headers[HEADER_LENGTH])])
    assert [o["name"] for o in header["outputs"]] == ["proba", "label"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 32}
    assert header["outputs"][1]["data"] == ["cat", "dog"]
    result = client_result(body, headers)
    assert_same(result.as_numpy("proba"), outputs[1][1])
    assert result.as_numpy("label").tolist() == ["cat", "dog"]
    assert result.as_numpy("extra") is None


def test_unknown_requested_output() -> None:
    with pytest.raises(MalformedRequestError, match="requested output 'nope' does not "
                       "exist; the outputs of this model are: y"):
        build_infer_response(model_name="m", model_version="1", request_id=None,
                             outputs=[("y", np.zeros(1))],
                             requested=[RequestedOutput("nope", False)], binary_default=False)


def test_output_conversions() -> None:
    outputs = [("u", np.array(["a", "bc"])), ("s", np.array([b"\xff", b"ok"])),
               ("t", np.array(["2024-01-02T03:04:05"], dtype="datetime64[s]")),
               ("be", np.array([1.5, 2.5], dtype=">f4")),
               ("mixed", np.array([1, "a", None], dtype=object))]
    body, headers = build_infer_response(model_name="m", model_version="1", request_id=None,
                                         outputs=outputs, requested=[], binary_default=True)
    result = client_result(body, headers)
    assert result.as_numpy("u").tolist() == [b"a", b"bc"]
    assert result.as_numpy("s").tolist() == [b"\xff", b"ok"]
    assert result.as_numpy("t").tolist() == [b"2024-01-02T03:04:05"]
    assert_same(result.as_numpy("be"), np.array([1.5, 2.5], dtype=np.float32))
    assert result.as_numpy("mixed").tolist() == [b"1", b"a", b""]

    with pytest.raises(InvalidInputError, match="output 's' holds bytes that are not UTF-8"):
        build_infer_response(model_name="m", model_version="1", request_id=None,
                             outputs=outputs, requested=[], binary_default=False)
    with pytest.raises(PredictionFailedError, match="output 'c' has dtype complex128"):
        build_infer_response(model_name="m", model_version="1", request_id=None,
                             outputs=[("c", np.array([1j]))], requested=[],
                             binary_default=False)


def test_request_to_response_round_trip_through_tritonclient() -> None:
    arrays = {name: SAMPLES[name] for name in ("FP64", "INT32", "BYTES")}
    outputs = [triton.InferRequestedOutput(name, binary_data=(name != "INT32"))
               for name in arrays]
    body, size = client_body(arrays, binary=True, outputs=outputs, request_id="rt")
    request = parse_infer_request(body, header_length=size)

    out_body, headers = build_infer_response(
        model_name="m", model_version="2.0.0", request_id=request.id,
        outputs=[(t.name, t.data) for t in request.inputs], requested=request.outputs,
        binary_default=request.binary_output_default)

    result = client_result(out_body, headers)
    assert result.get_response()["id"] == "rt"
    assert_same(result.as_numpy("FP64"), arrays["FP64"])
    assert_same(result.as_numpy("INT32"), arrays["INT32"])
    assert result.as_numpy("BYTES").tolist() == [[s.encode() for s in row]
                                                 for row in arrays["BYTES"].tolist()]


# --- model input ----------------------------------------------------------------------


COLUMNS = Signature(inputs=(ColumnSpec("age", ColumnType.LONG),
                            ColumnSpec("income", ColumnType.DOUBLE),
                            ColumnSpec("city", ColumnType.STRING, required=False)))


def request_of(*tensors: tuple[str, str, np.ndarray]) -> InferRequest:
    return InferRequest(id=None, outputs=[], parameters={}, binary_output_default=False,
                        inputs=[Tensor(name, dt, tuple(a.shape), a) for name, dt, a in tensors])


def test_one_input_per_column() -> None:
    request = request_of(("age", "INT64", np.array([30, 40])),
                         ("income", "FP64", np.array([[1.5], [2.5]])),
                         ("city", "BYTES", np.array([b"Z\xc3\xbcrich", "Oslo"], dtype=object)))
    payload = to_model_input(request, COLUMNS)
    assert payload == {"age": [30, 40], "income": [1.5, 2.5], "city": ["Zürich", "Oslo"]}
    frame = InputValidator(COLUMNS).validate(payload)
    assert list(frame.columns) == ["age", "income", "city"]
    assert frame["age"].tolist() == [30, 40]


def test_one_matrix_input_maps_columns_in_order() -> None:
    matrix = np.array([[30, 1.5, 0], [40, 2.5, 1]], dtype=np.float64)
    assert to_model_input(request_of(("input-0", "FP64", matrix)), COLUMNS) == {
        "age": [30.0, 40.0], "income": [1.5, 2.5], "city": [0.0, 1.0]}
    payload = to_model_input(request_of(("x", "FP64", matrix[:, :2])), COLUMNS)
    assert payload == {"age": [30.0, 40.0], "income": [1.5, 2.5]}
    assert InputValidator(COLUMNS).validate(payload)["age"].tolist() == [30, 40]


@pytest.mark.parametrize(("tensors", "message"), [
    ([("x", "FP64", np.zeros((2, 4)))],
     "input 'x' has 4 columns but the signature has 3 (age, income, city), 2 of them required"),
    ([("age", "INT64", np.zeros(2, dtype=np.int64)), ("height", "FP64", np.zeros(2))],
     "input 'height' is not a column of this model; send one input per column named age, "
     "income, city (shape [n]), or a single input of shape [n, 3]"),
    ([("x", "FP64", np.zeros(2))], "input 'x' is not a column of this model"),
    ([("age", "INT64", np.zeros((2, 2), dtype=np.int64))],
     "input 'age' has shape [2, 2]; an input for one column must have shape [n] or [n, 1]"),
    ([("age", "INT64", np.zeros(2, dtype=np.int64)), ("income", "FP64", np.zeros(3))],
     "input 'income' has 3 rows but input 'age' has 2"),
    ([("city", "BYTES", np.array([b"\xff"], dtype=object))],
     "input 'city': element 0 is not valid UTF-8 text"),
])
def test_column_mapping_mismatches(tensors: list[tuple[str, str, np.ndarray]],
                                   message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        to_model_input(request_of(*tensors), COLUMNS)
    assert message in str(info.value)


def test_tensor_signature_and_no_signature() -> None:
    image = np.zeros((1, 2, 2), dtype=np.float32)
    mask = np.ones((1, 2), dtype=np.int64)
    one = TensorSpec("float32", (-1, 2, 2), "image")
    two = Signature(inputs=(one, TensorSpec("int64", (-1, 2), "mask")))

    assert to_model_input(request_of(("anything", "FP32", image)), Signature((one,))) is image
    assert to_model_input(request_of(("x", "FP32", image)), None) is image
    both = to_model_input(request_of(("image", "FP32", image), ("mask", "INT64", mask)), two)
    assert isinstance(both, dict) and both["image"] is image and both["mask"] is mask
    free = to_model_input(request_of(("a", "FP32", image), ("b", "INT64", mask)), None)
    assert isinstance(free, dict) and set(free) == {"a", "b"}
    with pytest.raises(InvalidInputError,
                       match="input 'masks' is not an input of this model; expected inputs: "
                             "image, mask"):
        to_model_input(request_of(("image", "FP32", image), ("masks", "INT64", mask)), two)


# --- metadata -------------------------------------------------------------------------


def test_model_metadata_from_columns_and_tensors() -> None:
    signature = Signature(
        inputs=tuple(ColumnSpec(t.value, t) for t in ColumnType),
        outputs=(TensorSpec("int32", (-1,)),))
    outputs = model_outputs(signature, has_proba=True, classes=[0, 1, 2])
    meta = model_metadata(name="m", versions=["1.0.0", "1.1.0"], platform="sklearn",
                          signature=signature, outputs=outputs)
    assert meta["name"] == "m" and meta["versions"] == ["1.0.0", "1.1.0"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [
        {"name": "double", "datatype": "FP64", "shape": [-1]},
        {"name": "float", "datatype": "FP32", "shape": [-1]},
        {"name": "long", "datatype": "INT64", "shape": [-1]},
        {"name": "integer", "datatype": "INT32", "shape": [-1]},
        {"name": "boolean", "datatype": "BOOL", "shape": [-1]},
        {"name": "string", "datatype": "BYTES", "shape": [-1]},
        {"name": "datetime", "datatype": "BYTES", "shape": [-1]}]
    # The names infer answers, never the signature's positions ("0").
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT32", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]}]
    tensors = Signature(inputs=(TensorSpec("float32", (-1, 28, 28), "image"),
                                TensorSpec("uint8", (-1, 3))))
    assert model_metadata(name="m", versions=[], platform="python", signature=tensors,
                          outputs=model_outputs(tensors, has_proba=False, classes=None)) == {
        "name": "m", "versions": [], "platform": "python",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]},
                   {"name": "1", "datatype": "UINT8", "shape": [-1, 3]}],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}]}


@pytest.mark.parametrize(("specs", "classes", "predict"), [
    ((TensorSpec("str", (-1,)),), None, ("BYTES", (-1,))),
    ((TensorSpec("float64", (-1, 2)),), None, ("FP64", (-1, 2))),
    ((ColumnSpec("y", ColumnType.LONG),), None, ("INT64", (-1,))),
    ((ColumnSpec("a", ColumnType.DOUBLE), ColumnSpec("b", ColumnType.DOUBLE)), None,
     ("FP64", (-1, 2))),
    ((ColumnSpec("a", ColumnType.DOUBLE), ColumnSpec("b", ColumnType.STRING)), None,
     ("BYTES", (-1, 2))),
    ((), ["cat", "dog"], ("BYTES", (-1,))),
    ((), [0, 1], ("INT64", (-1,))),
    ((), None, ("FP64", (-1,))),
])
def test_predict_output_type(specs: tuple[Any, ...], classes: list[Any] | None,
                             predict: tuple[str, tuple[int, ...]]) -> None:
    signature = Signature(inputs=(ColumnSpec("x", ColumnType.DOUBLE),), outputs=specs)
    (output,) = model_outputs(signature, has_proba=False, classes=classes)
    assert (output.name, output.datatype, output.shape) == ("predict", *predict)
    proba = model_outputs(None, has_proba=True, classes=None)[1]
    assert (proba.name, proba.datatype, proba.shape) == ("predict_proba", "FP64", (-1, -1))


def test_requested_outputs_are_checked_against_the_model() -> None:
    outputs = model_outputs(None, has_proba=True, classes=[0, 1])
    check_requested([RequestedOutput("predict_proba", True)], outputs)
    with pytest.raises(MalformedRequestError, match="requested output '0' does not exist; "
                       "the outputs of this model are: predict, predict_proba"):
        check_requested([RequestedOutput("predict", False), RequestedOutput("0", False)],
                        outputs)


def test_cached_answers_conform_to_the_declared_datatype() -> None:
    fp32 = OutputSpec("predict", "FP32", (-1,))
    assert conform(np.array([0.5, 1.0]), fp32).dtype == np.float32
    assert conform(np.array([1, 2]), OutputSpec("predict", "INT32", (-1,))).dtype == np.int32
    labels = np.array(["a", "b"], dtype=object)  # never forced into another kind
    assert conform(labels, fp32) is labels
    floats = np.array([0.5])
    assert conform(floats, OutputSpec("predict", "INT64", (-1,))) is floats


def test_server_metadata_and_error_body() -> None:
    assert server_metadata("0.1.0") == {"name": "modelhost", "version": "0.1.0",
                                        "extensions": ["binary_tensor_data"]}
    assert orjson.loads(error_body("bad 'x'")) == {"error": "bad 'x'"}
