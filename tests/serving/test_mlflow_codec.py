"""modelhost.serving.protocols.mlflow: parsing /invocations bodies, answers, errors."""

from __future__ import annotations

import datetime as dt
import json
import math
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from modelhost.errors import (
    InvalidInputError,
    MalformedRequestError,
    ModelhostError,
    NotFoundError,
    PredictionFailedError,
    SignatureViolationError,
    UnsupportedMediaTypeError,
)
from modelhost.serving.protocols.mlflow import (
    REQUIRED_INPUT_FORMAT,
    STATUS_FOR,
    ScoringRequest,
    build_scoring_response,
    error_body,
    error_response,
    parse_scoring_request,
    status_for,
)

JSON = "application/json"
CSV = "text/csv"


def parse_json(document: Any, content_type: str = JSON, **kwargs: Any) -> ScoringRequest:
    return parse_scoring_request(json.dumps(document).encode(), content_type, **kwargs)


# --- the four input fields --------------------------------------------------------------


def test_dataframe_split_gives_columns() -> None:
    request = parse_json({"dataframe_split": {"columns": ["age", "city"], "index": [7, 8],
                                              "data": [[31, "Oslo"], [None, "Rome"]]}})
    assert request == ScoringRequest(payload={"age": [31, None], "city": ["Oslo", "Rome"]},
                                     params={}, orient="columns", source="dataframe_split")


def test_dataframe_split_edge_shapes() -> None:
    no_names = parse_json({"dataframe_split": {"data": [[1, 2], [3, 4]]}})
    assert (no_names.payload, no_names.orient) == ([[1, 2], [3, 4]], "tensor")
    flat = parse_json({"dataframe_split": {"columns": ["x"], "data": [1.5, 2.5]}})
    assert (flat.payload, flat.orient) == ({"x": [1.5, 2.5]}, "columns")
    empty = parse_json({"dataframe_split": {"columns": ["a", "b"], "data": []}})
    assert (empty.payload, empty.orient) == ({"a": [], "b": []}, "columns")
    numbered = parse_json({"dataframe_split": {"columns": [0, 1], "data": [[1, 2]]}})
    assert numbered.payload == {"0": [1], "1": [2]}
    null_columns = parse_json({"dataframe_split": {"columns": None, "data": [[1]]}})
    assert null_columns.orient == "tensor"


def test_dataframe_records_gives_records() -> None:
    rows = [{"age": 31, "city": "Oslo"}, {"age": 40}]
    request = parse_json({"dataframe_records": rows})
    assert request == ScoringRequest(payload=rows, params={}, orient="records",
                                     source="dataframe_records")
    assert parse_json({"dataframe_records": []}).payload == []
    unnamed = parse_json({"dataframe_records": [[1, 2], [3, 4]]})
    assert (unnamed.payload, unnamed.orient) == ([[1, 2], [3, 4]], "tensor")


@pytest.mark.parametrize("key", ["instances", "inputs"])
@pytest.mark.parametrize(("value", "orient"), [
    ([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "records"),
    ({"a": [1, 2], "b": ["x", "y"]}, "columns"),
    ({"image": [[[0, 1], [1, 0]]], "mask": [[[1, 1], [0, 0]]]}, "columns"),
    ([[1.0, 2.0], [3.0, 4.0]], "tensor"),
    ([1, 2, 3], "tensor"),
    ("a prompt", "tensor"),
    (4.5, "tensor"),
    ({"a": 1, "b": "x"}, "tensor"),
    ({}, "tensor"),
])
def test_instances_and_inputs(key: str, value: Any, orient: str) -> None:
    request = parse_json({key: value})
    assert (request.payload, request.orient, request.source) == (value, orient, key)


def test_inputs_keeps_columns_of_different_lengths() -> None:
    value = {"prompt": ["hi"], "stop": ["\n", "."]}
    assert (parse_json({"inputs": value}).orient, parse_json({"inputs": value}).payload) == (
        "tensor", value)


def test_params_and_unknown_keys() -> None:
    params = {"temperature": 0.5, "stop": ["\n"], "nested": {"k": True}}
    request = parse_json({"inputs": [1], "params": params, "signature_name": "x", "extra": 1})
    assert request.params == params
    assert parse_json({"inputs": [1], "params": None}).params == {}


# --- content types ------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
    'application/json; charset="utf-8"', "Application/JSON; Charset=utf8", "application/json;",
])
def test_json_content_types(content_type: str) -> None:
    assert parse_scoring_request(b'{"inputs": [1]}', content_type).payload == [1]


@pytest.mark.parametrize("content_type", ["text/csv", "text/csv; charset=utf-8",
                                          "TEXT/CSV;charset=UTF-8"])
def test_csv_content_types(content_type: str) -> None:
    assert parse_scoring_request(b"a\n1\n", content_type).payload == [{"a": 1}]


# --- CSV ------------------------------------------------------------------------------------


def test_csv_header_quoting_and_missing_values() -> None:
    body = (b'age,city,score,member,note\n'
            b'31,"Oslo, Norway",1.5,true,"said ""hi"""\n'
            b',Rome,,false,"two\nlines"\n'
            b'40,,2,,\n')
    request = parse_scoring_request(body, CSV)
    assert request == ScoringRequest(payload=[
        {"age": 31, "city": "Oslo, Norway", "score": 1.5, "member": True, "note": 'said "hi"'},
        {"age": None, "city": "Rome", "score": None, "member": False, "note": "two\nlines"},
        {"age": 40, "city": None, "score": 2.0, "member": None, "note": None},
    ], params={}, orient="records", source="csv")
    assert type(request.payload[0]["age"]) is int
    assert type(request.payload[2]["score"]) is float


def test_csv_short_rows_header_only_and_bom() -> None:
    assert parse_scoring_request(b"a,b\n1\n", CSV).payload == [{"a": 1, "b": None}]
    assert parse_scoring_request(b"a,b\n", CSV).payload == []
    assert parse_scoring_request("\ufeffnom\né\n".encode(), CSV).payload == [{"nom": "é"}]


def test_json_bom_is_tolerated() -> None:
    assert parse_scoring_request(b'\xef\xbb\xbf{"inputs": [1]}', JSON).payload == [1]


# --- nesting --------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A body whose arrays and objects nest ``depth`` levels (the object counts as one)."""
    return b'{"inputs": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


def test_depth_limit() -> None:
    assert parse_scoring_request(nested(8), JSON, max_depth=8).orient == "tensor"
    with pytest.raises(MalformedRequestError, match="nests 9 levels deep; at most 8"):
        parse_scoring_request(nested(9), JSON, max_depth=8)
    with pytest.raises(MalformedRequestError, match="nests 65 levels"):
        parse_scoring_request(nested(65), JSON)
    with pytest.raises(MalformedRequestError):  # beyond orjson's own limit
        parse_scoring_request(nested(5000), JSON)
    brackets_in_strings = json.dumps({"inputs": ["[[[[{{{{", '\\"[[[[', "]]"]}).encode()
    assert parse_scoring_request(brackets_in_strings, JSON, max_depth=2).payload[0] == "[[[[{{{{"
    with pytest.raises(ValueError, match="max_depth"):
        parse_scoring_request(b"{}", JSON, max_depth=0)


# --- NaN / Infinity ---------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_literals_are_refused_by_default(literal: str) -> None:
    body = f'{{"dataframe_records": [{{"x": {literal}}}]}}'.encode()
    with pytest.raises(MalformedRequestError, match=f"'{literal}' is not valid JSON; send null"):
        parse_scoring_request(body, JSON)


def test_nan_literals_when_allowed() -> None:
    body = (b'{"dataframe_split": {"columns": ["x", "y"], '
            b'"data": [[NaN, Infinity], [1, -Infinity]]}}')
    request = parse_scoring_request(body, JSON, allow_nan_literals=True)
    assert request.payload == {"x": [None, 1], "y": [math.inf, -math.inf]}
    with pytest.raises(MalformedRequestError, match="valid JSON"):
        parse_scoring_request(b'{"inputs": [NaN}', JSON, allow_nan_literals=True)


# --- errors ---------------------------------------------------------------------------------

ERRORS: list[tuple[bytes, str | None, type[ModelhostError], int, str]] = [
    # content type -> 415
    (b'{"inputs": [1]}', None, UnsupportedMediaTypeError, 415, "'(none)' is not supported"),
    (b'{"inputs": [1]}', "", UnsupportedMediaTypeError, 415, "not supported"),
    (b'{"inputs": [1]}', "text/plain", UnsupportedMediaTypeError, 415,
     "content type 'text/plain' is not supported; use application/json, text/csv"),
    (b"PAR1", "application/vnd.apache.parquet", UnsupportedMediaTypeError, 415, "parquet"),
    (b'{"inputs": [1]}', "application/json; charset=latin-1", UnsupportedMediaTypeError, 415,
     "latin-1"),
    (b'{"inputs": [1]}', "application/json; foo=bar", UnsupportedMediaTypeError, 415, "foo=bar"),
    (b"a\n1\n", "text/csv; header=present", UnsupportedMediaTypeError, 415, "header"),
    # unparseable -> 400
    (b'{"inputs": [1]', JSON, MalformedRequestError, 400,
     "Invalid input. Ensure that input is a valid JSON formatted string"),
    (b"not json", JSON, MalformedRequestError, 400, "valid JSON formatted string"),
    (b'{"inputs": ["\xff"]}', JSON, MalformedRequestError, 400, "valid JSON formatted string"),
    (b'{"inputs": [1e400]}', JSON, MalformedRequestError, 400, "infinity"),
    (b"a\n\xff\n", CSV, MalformedRequestError, 400, "valid UTF-8 encoded string"),
    # empty body -> 400
    (b"", JSON, InvalidInputError, 400, "The request body is empty"),
    (b" \n ", JSON, InvalidInputError, 400, "The request body is empty"),
    (b"", CSV, InvalidInputError, 400, "a CSV table with a header row"),
    # structure -> 400
    (b"[1, 2]", JSON, InvalidInputError, 400, "Received a list."),
    (b'"text"', JSON, InvalidInputError, 400, "Received unexpected input type 'str'."),
    (b'{"columns": ["a"], "data": [[1]]}', JSON, InvalidInputError, 400,
     "Received dictionary with input fields: ['columns', 'data']."),
    (b'{"inputs": [1], "instances": [1]}', JSON, InvalidInputError, 400,
     "Received dictionary with input fields: ['inputs', 'instances']."),
    (b'{"inputs": [1], "params": [1]}', JSON, InvalidInputError, 400,
     "Invalid input. Params must be a dictionary. Got type 'list'."),
    (b'{"inputs": [1], "params": "x"}', JSON, InvalidInputError, 400, "Got type 'str'."),
    (b'{"dataframe_split": [[1]]}', JSON, InvalidInputError, 400,
     "Invalid input. Dataframe split format must be a dictionary. Got list."),
    (b'{"dataframe_split": null}', JSON, InvalidInputError, 400, "Got type null."),
    (b'{"dataframe_split": {"columns": ["a"]}}', JSON, InvalidInputError, 400,
     "must have 'data' field and optionally 'columns' and 'index' fields. Got ['columns']."),
    (b'{"dataframe_split": {"data": [], "rows": 1}}', JSON, InvalidInputError, 400,
     "Got ['data', 'rows']."),
    (b'{"dataframe_split": {"columns": ["a"], "data": {"a": 1}}}', JSON, InvalidInputError, 400,
     "'split' format. Error: ''data' must be a list of rows, got dict'"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}', JSON,
     InvalidInputError, 400, "row 1 must be a list of 2 values, got 1 values"),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [5]}}', JSON, InvalidInputError, 400,
     "row 0 must be a list of 2 values, got int"),
    (b'{"dataframe_split": {"columns": "a", "data": [[1]]}}', JSON, InvalidInputError, 400,
     "'columns' must be a list of column names, got str"),
    (b'{"dataframe_split": {"columns": [1.5], "data": [[1]]}}', JSON, InvalidInputError, 400,
     "column names must be strings, got float"),
    (b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}', JSON,
     InvalidInputError, 400, "column 'a' appears more than once"),
    (b'{"dataframe_split": {"columns": ["a"], "index": [0, 1], "data": [[1]]}}', JSON,
     InvalidInputError, 400, "'index' must be a list of 1 labels, one per row, got 2 labels"),
    (b'{"dataframe_records": {"a": [1]}}', JSON, InvalidInputError, 400,
     "Invalid input. Dataframe records format must be a list of records. Got dictionary."),
    (b'{"dataframe_records": 3}', JSON, InvalidInputError, 400, "Got type int."),
    (b'{"dataframe_records": [{"a": 1}, [1]]}', JSON, InvalidInputError, 400,
     "dataframe_records mixes records (JSON objects) with other values: item 1 is list"),
    (b'{"instances": [{"a": 1}, 2]}', JSON, InvalidInputError, 400, "item 1 is int"),
    (b'{"inputs": null}', JSON, InvalidInputError, 400, "'inputs' is null"),
    (b'{"instances": {"a": [1], "b": [1, 2]}}', JSON, InvalidInputError, 400,
     "Invalid input. The length of values for each input/column name are not the same"),
    # bad CSV -> 400
    (b"a,b\n1,2\n3,4,5\n", CSV, InvalidInputError, 400,
     "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
     "CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` method. "
     "Error: 'Error tokenizing data"),
    (b"a,b\n1,2,3\n", CSV, InvalidInputError, 400, "more fields than the header has names"),
    (b'a,b\n1,"open\n', CSV, InvalidInputError, 400, "EOF inside string"),
]


@pytest.mark.parametrize(("body", "content_type", "error", "status", "message"), ERRORS)
def test_errors(body: bytes, content_type: str | None, error: type[ModelhostError],
                status: int, message: str) -> None:
    with pytest.raises(error) as caught:
        parse_scoring_request(body, content_type)
    assert type(caught.value) is error
    assert message in caught.value.message
    assert status_for(caught.value) == status
    answer = error_response(caught.value)
    assert answer is not None
    assert answer[0] == status
    assert orjson.loads(answer[1]) == {"error_code": "BAD_REQUEST",
                                       "message": caught.value.message}


def test_missing_field_message_keeps_mlflow_wording() -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_json({"data": [1]})
    assert caught.value.message.startswith(
        "The input must be a JSON dictionary with exactly one of the input fields "
        "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}. "
        "Received dictionary with input fields: ['data']. Optionally add 'params'")
    many = {f"key{i}": 1 for i in range(12)} | {"x" * 60: 1}
    with pytest.raises(InvalidInputError, match=r"'key9', \.\.\.\]\.") as caught:
        parse_json(many)
    assert "x" * 41 not in caught.value.message


def test_error_body_status_table() -> None:
    assert orjson.loads(error_body("BAD_REQUEST", "bad")) == {"error_code": "BAD_REQUEST",
                                                               "message": "bad"}
    expected = {MalformedRequestError: 400, InvalidInputError: 400,
                UnsupportedMediaTypeError: 415}
    assert expected == STATUS_FOR
    # MLflow answers 400 for input that breaks the signature (§3.6's 422 does not apply).
    violation = SignatureViolationError([{"message": "column 'age': expected long"}])
    assert error_response(violation) == (400, error_body("BAD_REQUEST",
                                                         "column 'age': expected long"))
    assert status_for(NotFoundError("nope")) is None
    assert error_response(RuntimeError("boom")) is None


# --- responses ------------------------------------------------------------------------------


def response(predictions: Any, probabilities: Any = None) -> Any:
    return orjson.loads(build_scoring_response(predictions, probabilities))


def test_response_shapes_and_types() -> None:
    assert build_scoring_response(np.array([1, 0, 1])) == b'{"predictions":[1,0,1]}'
    assert response(np.array([[0.25, 0.75]], dtype=np.float32)) == {"predictions": [[0.25, 0.75]]}
    assert response(np.array([True, False])) == {"predictions": [True, False]}
    assert response(np.array(["yes", "no"])) == {"predictions": ["yes", "no"]}
    assert response(np.array([1.0, math.nan, math.inf])) == {"predictions": [1.0, None, None]}
    assert response(np.array([])) == {"predictions": []}
    assert response(np.int64(3)) == {"predictions": 3}


def test_response_object_and_special_dtypes() -> None:
    mixed = np.array([np.int64(1), np.float32(0.5), "a", None, b"\x00\x01", {"k": np.int8(2)},
                      np.array([1, 2]), pd.Timestamp("2024-01-02"), pd.NA, pd.NaT,
                      dt.date(2024, 1, 2), np.datetime64("2024-01-02"), (1, 2)], dtype=object)
    assert response(mixed) == {"predictions": [
        1, 0.5, "a", None, "AAE=", {"k": 2}, [1, 2], "2024-01-02T00:00:00", None, None,
        "2024-01-02", "2024-01-02", [1, 2]]}
    dates = np.array(["2024-01-02T03:04:05"], dtype="datetime64[s]")
    assert response(dates) == {"predictions": ["2024-01-02T03:04:05"]}
    assert response(np.array([90], dtype="timedelta64[m]")) == {"predictions": [5400.0]}
    assert response(np.array([b"ab"])) == {"predictions": ["YWI="]}
    assert response(np.array([], dtype="S3")) == {"predictions": []}


def test_response_ignores_probabilities_and_writes_frames_as_records() -> None:
    # The MLflow scoring server returns only predict()'s output.
    assert response(np.array([1]), np.array([[0.2, 0.8]])) == {"predictions": [1]}
    frame = pd.DataFrame({"label": [1, 0], "score": [0.9, 0.1]})
    assert response(frame) == {"predictions": [{"label": 1, "score": 0.9},
                                               {"label": 0, "score": 0.1}]}
    assert response(pd.Series([1, 2], name="y")) == {"predictions": [{"y": 1}, {"y": 2}]}
    assert response([1, "a"]) == {"predictions": [1, "a"]}


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array([object()], dtype=object),
                                 np.array([np.complex64(1j)], dtype=object)])
def test_unwritable_predictions(bad: Any) -> None:
    with pytest.raises(PredictionFailedError, match="cannot be written as JSON"):
        build_scoring_response(bad)


# --- conformance with MLflow ----------------------------------------------------------------

# mlflow.types.responses warns about an Any type hint when mlflow.pyfunc is imported.
mlflow_import_warning = pytest.mark.filterwarnings(
    r"ignore:.*Any type hint is inferred as AnyType:UserWarning")
# mlflow's input-example helper compares an Index with a range, deprecated by pandas 3.
mlflow_pandas_warning = pytest.mark.filterwarnings(
    "ignore:Operation with range is deprecated:pandas.errors.Pandas4Warning")


@pytest.fixture(scope="module")
def scoring_server() -> ModuleType:
    from mlflow.pyfunc import scoring_server

    return scoring_server


def as_frame(request: ScoringRequest) -> pd.DataFrame:
    assert request.orient in ("records", "columns")
    return pd.DataFrame(request.payload)


@mlflow_import_warning
@mlflow_pandas_warning
def test_bodies_from_mlflow_client_helpers() -> None:
    from mlflow.models.utils import convert_input_example_to_serving_input
    from mlflow.utils.proto_json_utils import dump_input_data

    frame = pd.DataFrame({"age": [31, 40], "city": ["Oslo", "Rome"], "score": [1.5, 2.5]})
    for body in (convert_input_example_to_serving_input(frame),
                 dump_input_data(frame, params={"threshold": 0.3})):
        assert body is not None
        request = parse_scoring_request(body.encode(), JSON)
        assert (request.source, request.orient) == ("dataframe_split", "columns")
        pd.testing.assert_frame_equal(as_frame(request), frame)
    assert request.params == {"threshold": 0.3}

    # MLflow's helpers write NaN for a missing value: strict mode refuses it (documented).
    gappy = pd.DataFrame({"age": [31.0, None], "city": ["Oslo", None]})
    body = convert_input_example_to_serving_input(gappy)
    assert body is not None and "NaN" in body
    with pytest.raises(MalformedRequestError, match="'NaN' is not valid JSON"):
        parse_scoring_request(body.encode(), JSON)
    lenient = parse_scoring_request(body.encode(), JSON, allow_nan_literals=True)
    assert lenient.payload == {"age": [31.0, None], "city": ["Oslo", None]}

    array = np.arange(6, dtype=np.float64).reshape(3, 2)
    tensor = parse_scoring_request(dump_input_data(array).encode(), JSON)
    assert (tensor.source, tensor.orient) == ("inputs", "tensor")
    np.testing.assert_array_equal(np.asarray(tensor.payload), array)
    example = convert_input_example_to_serving_input({"x": np.array([1, 2]),
                                                      "y": np.array([3, 4])})
    assert example is not None
    assert parse_scoring_request(example.encode(), JSON).payload == {"x": [1, 2], "y": [3, 4]}
    records = convert_input_example_to_serving_input([{"a": 1}, {"a": 2}])
    assert records is not None
    assert parse_scoring_request(records.encode(), JSON).orient == "records"
    # The documented hand-written forms (mlflow.org "Deploy MLflow Model as a local server").
    frame_body = frame.to_json(orient="records")
    request = parse_scoring_request(f'{{"dataframe_records": {frame_body}}}'.encode(), JSON)
    pd.testing.assert_frame_equal(as_frame(request), frame)
    request = parse_scoring_request(frame.to_csv(index=False).encode(), CSV)
    pd.testing.assert_frame_equal(as_frame(request), frame, check_dtype=False)


class _RecordingModel:
    """Stands in for a PyFuncModel in mlflow's ``invocations``; keeps what it was given."""

    metadata = object()

    def __init__(self) -> None:
        self.seen: tuple[Any, Any] | None = None

    def predict(self, data: Any, params: Any = None) -> list[int]:
        self.seen = (data, params)
        return [1]


SAME_AS_MLFLOW: list[tuple[bytes, str]] = [
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}', JSON),
    (b'{"dataframe_split": {"columns": ["a"], "index": [5], "data": [[1.5]]}, '
     b'"params": {"k": 1}}', JSON),
    (b'{"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2}]}', JSON),
    (b'{"instances": [{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}]}', JSON),
    (b'{"inputs": {"a": [1, 2], "b": [3, 4]}}', JSON),
    (b'{"inputs": [[1, 2], [3, 4]], "other": 1}', JSON),
    (b'{"instances": [1, 2, 3]}', "application/json; charset=utf-8"),
    (b'a,b\n1,"x, y"\n2,z\n', "text/csv; charset=UTF-8"),
    (b"", JSON),
    (b"", CSV),
    (b"{", JSON),
    (b"[1]", JSON),
    (b"{}", JSON),
    (b'{"inputs": [1], "instances": [1]}', JSON),
    (b'{"dataframe_records": {"a": 1}}', JSON),
    (b'{"dataframe_split": [1]}', JSON),
    (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}', JSON),
    (b'{"instances": {"a": [1], "b": [1, 2]}}', JSON),
    (b'{"instances": [{"a": 1}, [1]]}', JSON),
    (b"a,b\n1,2\n3,4,5\n", CSV),
    (b'{"inputs": [1]}', "text/plain"),
    (b'{"inputs": [1]}', "application/json; charset=latin-1"),
    (b'{"inputs": [1]}', "application/json; foo=bar"),
]


def mlflow_answer(server: ModuleType, body: bytes, content_type: str) -> tuple[int, Any]:
    model = _RecordingModel()
    try:
        status = server.invocations(body, content_type, model, None).status
    except server.MlflowException as exc:
        return exc.get_http_status_code(), None
    return status, model.seen


@mlflow_import_warning
@pytest.mark.parametrize(("body", "content_type"), SAME_AS_MLFLOW)
def test_same_answers_as_mlflow_scoring_server(scoring_server: ModuleType, body: bytes,
                                               content_type: str) -> None:
    status, seen = mlflow_answer(scoring_server, body, content_type)
    if status != 200:
        with pytest.raises(ModelhostError) as caught:
            parse_scoring_request(body, content_type)
        assert status_for(caught.value) == status
        return
    request = parse_scoring_request(body, content_type)
    assert seen is not None
    data, params = seen
    assert request.params == (params or {})
    if isinstance(data, pd.DataFrame):
        pd.testing.assert_frame_equal(as_frame(request), data.reset_index(drop=True),
                                      check_dtype=False)
    elif isinstance(data, dict):
        assert {k: np.asarray(v).tolist() for k, v in data.items()} == (
            pd.DataFrame(request.payload).to_dict(orient="list"))
    else:
        np.testing.assert_array_equal(np.asarray(request.payload), data)


@mlflow_import_warning
@pytest.mark.parametrize("body", [
    b'{"inputs": [NaN]}',  # non-standard JSON: see allow_nan_literals
    b'{"inputs": [1], "params": [1]}',  # MLflow leaves params to the model
    b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}',  # not a dict of columns
    b'{"dataframe_records": [{"a": 1}], "x": ' + b"[" * 70 + b"]" * 70 + b"}",  # too deep
])
def test_documented_stricter_than_mlflow(scoring_server: ModuleType, body: bytes) -> None:
    assert mlflow_answer(scoring_server, body, JSON)[0] == 200
    with pytest.raises((MalformedRequestError, InvalidInputError)):
        parse_scoring_request(body, JSON)


@mlflow_import_warning
def test_mlflow_error_wording(scoring_server: ModuleType) -> None:
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    for value, orient, ours in [
        ({"a": 1}, "records", {"dataframe_records": {"a": 1}}),
        ([1], "split", {"dataframe_split": [1]}),
    ]:
        with pytest.raises(scoring_server.MlflowException) as theirs:
            dataframe_from_parsed_json(value, pandas_orient=orient)
        with pytest.raises(InvalidInputError) as mine:
            parse_json(ours)
        assert mine.value.message == theirs.value.message
    assert REQUIRED_INPUT_FORMAT.split("{")[0] == (
        scoring_server.REQUIRED_INPUT_FORMAT.split("{")[0])
    assert set(REQUIRED_INPUT_FORMAT.split("{")[1].rstrip("}").replace("'", "").split(", ")) == (
        scoring_server.SUPPORTED_FORMATS)
