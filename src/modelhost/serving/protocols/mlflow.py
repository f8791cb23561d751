"""The MLflow scoring protocol (PRODUCT.md §3.3): request parsing and response bodies.

Pure and HTTP-framework-free: bytes and a ``Content-Type`` in, a :class:`ScoringRequest`
or a modelhost error out; predictions in, response bytes out. The route maps errors with
:data:`STATUS_FOR` (or :func:`status_for`) and :func:`error_body`.

Behaviour follows ``mlflow.pyfunc.scoring_server`` (MLflow 3.x):

* ``application/json`` and ``text/csv``, each with an optional ``charset=utf-8``
  parameter; any other media type, charset or parameter is answered 415, like MLflow.
  MLflow's Parquet content type and its "unified LLM" bodies (``messages``, ``prompt``,
  ``input`` without a wrapping key) are not supported.
* A JSON body is a dictionary with exactly one of ``dataframe_split``,
  ``dataframe_records``, ``instances``, ``inputs``, plus an optional ``params``
  dictionary. Other top-level keys are ignored, as MLflow ignores them.
* Bad input is 400 with ``{"error_code": "BAD_REQUEST", "message": ...}``; messages keep
  MLflow's wording (including its ``"Invalid input. "`` prefix) but never echo the body.
  MLflow also answers 400 when the input breaks the model signature, so a
  :class:`~modelhost.errors.SignatureViolationError` (a subclass of InvalidInputError)
  maps to 400 here, not to the 422 of §3.6: §3.3 keeps MLflow's status codes.
* MLflow answers 415 in ``text/plain`` with no error code; its error-code enum has none for
  415, so :data:`ERROR_CODE_FOR_STATUS` uses ``BAD_REQUEST`` for a JSON 415 body too.

Deliberate differences from MLflow, all stricter or safer:

* JSON is parsed strictly (orjson): the non-standard ``NaN``/``Infinity`` literals are
  rejected unless ``allow_nan_literals=True``. Note that MLflow's own client helpers
  (``convert_input_example_to_serving_input``, ``dump_input_data``) write ``NaN`` for
  missing values of a DataFrame, so strict mode refuses such requests with 400.
* Nesting deeper than ``max_depth`` is refused (MLflow has no limit).
* A missing ``Content-Type`` is 415 (MLflow fails with 500).
* Responses are strict JSON: NaN and infinite predictions are written as ``null``
  (MLflow writes ``NaN``/``Infinity``), bytes as base64 without line breaks.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from modelhost.errors import (
    InvalidInputError,
    MalformedRequestError,
    PredictionFailedError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "CONTENT_TYPES",
    "ERROR_CODE_FOR_STATUS",
    "INPUT_FIELDS",
    "ORIENT_COLUMNS",
    "ORIENT_RECORDS",
    "ORIENT_TENSOR",
    "REQUIRED_INPUT_FORMAT",
    "STATUS_FOR",
    "ScoringRequest",
    "build_scoring_response",
    "error_body",
    "error_response",
    "parse_scoring_request",
    "status_for",
]

CONTENT_TYPE_JSON: Final = "application/json"
CONTENT_TYPE_CSV: Final = "text/csv"
CONTENT_TYPES: Final = (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV)

DF_SPLIT: Final = "dataframe_split"
DF_RECORDS: Final = "dataframe_records"
INSTANCES: Final = "instances"
INPUTS: Final = "inputs"
PARAMS: Final = "params"
INPUT_FIELDS: Final = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)

ORIENT_RECORDS: Final = "records"  # list of dicts, one per row
ORIENT_COLUMNS: Final = "columns"  # dict of equally long lists, one per column (or tensor)
ORIENT_TENSOR: Final = "tensor"  # anything else, kept as sent: list of lists, scalar, dict

# MLflow formats a Python set here, whose order changes between processes; ours is fixed.
REQUIRED_INPUT_FORMAT: Final = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
_FORMAT_HINT: Final = (
    "Optionally add 'params' (a dictionary), e.g. "
    '{"dataframe_split": {"columns": ["x"], "data": [[1.0]]}, "params": {}}'
)
_INVALID: Final = "Invalid input. "
_CSV_HINT: Final = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
    "CSV-formatted Pandas DataFrame produced using the `pandas.DataFrame.to_csv()` method."
)
_UTF8_CHARSETS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})

STATUS_FOR: dict[type[Exception], int] = {
    MalformedRequestError: 400,
    InvalidInputError: 400,  # incl. SignatureViolationError: MLflow answers 400, not 422
    UnsupportedMediaTypeError: 415,
}
ERROR_CODE_FOR_STATUS: dict[int, str] = {400: "BAD_REQUEST", 415: "BAD_REQUEST"}


@dataclass(frozen=True)
class ScoringRequest:
    """One parsed ``/invocations`` request.

    ``payload`` has the shape named by ``orient``:

    * ``"records"``: a list of dicts, one per row (``dataframe_records``, CSV, and any
      ``instances``/``inputs`` list of objects; an empty list is zero records).
    * ``"columns"``: a dict of equally long lists, one per column (``dataframe_split``
      with ``columns``, and any ``instances``/``inputs`` dict of equally long lists). A
      dict of batch-first tensors has the same shape; the signature decides.
    * ``"tensor"``: anything else exactly as sent, for the caller to map with the
      signature: a list of lists or of scalars, a scalar, a dict of scalars or of lists of
      different lengths, and ``dataframe_split``/``dataframe_records`` rows without
      column names.

    Missing values are ``None``. ``source`` names where the input came from: one of
    :data:`INPUT_FIELDS`, or ``"csv"``.
    """

    payload: list[dict[str, Any]] | dict[str, list[Any]] | Any
    params: dict[str, Any]
    orient: str
    source: str = field(default="")


# --- content type ----------------------------------------------------------------------


def _media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, or UnsupportedMediaTypeError.

    Like MLflow: only a ``charset`` parameter is allowed and it must be UTF-8 (ASCII, a
    subset, is accepted too); any other parameter is refused.
    """
    if content_type is None or not content_type.strip():
        raise UnsupportedMediaTypeError("(none)", CONTENT_TYPES)
    media, *parameters = (part.strip() for part in content_type.split(";"))
    media = media.lower()
    if media not in CONTENT_TYPES:
        raise UnsupportedMediaTypeError(content_type, CONTENT_TYPES)
    for parameter in parameters:
        if not parameter:
            continue
        key, _, value = parameter.partition("=")
        key = key.strip().lower()
        value = value.strip().strip('"').strip().lower()
        if key != "charset" or value not in _UTF8_CHARSETS:
            raise UnsupportedMediaTypeError(content_type, CONTENT_TYPES)
    return media


# --- JSON --------------------------------------------------------------------------------

# A JSON string (orjson has already validated the body, so no stray quote exists outside).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


def _nesting_depth(body: bytes, max_depth: int) -> int:
    """How deeply arrays and objects nest in a valid JSON body, or 0 when it has too few
    brackets to exceed ``max_depth``. Runs at C speed, without walking the parsed value."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return 0
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = _STEP[np.frombuffer(brackets, dtype=np.uint8)].astype(np.int64)
    return int(np.cumsum(steps).max())


class _NanLiteralError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NanLiteralError(name)


def _nan_constant(name: str) -> float | None:
    # MLflow's clients write NaN for a missing value (that is what NaN means to pandas).
    return None if name == "NaN" else float(name.replace("Infinity", "inf"))


def _loads(body: bytes, allow_nan_literals: bool) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = str(exc)
    # Error path only: tell a NaN/Infinity literal from other breakage with the stdlib.
    try:
        text = body.decode("utf-8")
        value = json.loads(
            text, parse_constant=_nan_constant if allow_nan_literals else _reject_constant)
    except _NanLiteralError as exc:
        raise MalformedRequestError(
            f"{_INVALID}Ensure that input is a valid JSON formatted string. Error: '{exc}' is "
            "not valid JSON; send null for a missing value") from None
    except (ValueError, RecursionError):
        raise MalformedRequestError(
            f"{_INVALID}Ensure that input is a valid JSON formatted string. Error: {error}"
        ) from None
    if not allow_nan_literals:  # the stdlib is laxer (e.g. 1e400, lone surrogates)
        raise MalformedRequestError(
            f"{_INVALID}Ensure that input is a valid JSON formatted string. Error: {error}")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _preview_keys(keys: list[str]) -> str:
    shown = [k if len(k) <= 40 else k[:37] + "..." for k in keys[:10]]
    return repr(shown)[:-1] + (", ...]" if len(keys) > 10 else "]")


def _split_error(message: str) -> InvalidInputError:
    return InvalidInputError(
        f"{_INVALID}Provided dataframe_split field is not a valid dataframe representation in "
        f"'split' format. Error: '{message}'")


def _column_names(columns: Any) -> list[str]:
    if not isinstance(columns, list):
        raise _split_error(f"'columns' must be a list of column names, got {_type_name(columns)}")
    names: list[str] = []
    for name in columns:
        if isinstance(name, str):
            names.append(name)
        elif isinstance(name, int) and not isinstance(name, bool):
            names.append(str(name))
        else:
            raise _split_error(f"column names must be strings, got {_type_name(name)}")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise _split_error(f"column {name!r} appears more than once")
            seen.add(name)
    return names


def _parse_split(value: Any) -> tuple[Any, str]:
    if not isinstance(value, dict):
        got = "list" if isinstance(value, list) else f"type {_type_name(value)}"
        raise InvalidInputError(
            f"{_INVALID}Dataframe split format must be a dictionary. Got {got}.")
    keys = set(value)
    if "data" not in keys or keys - {"columns", "data", "index"}:
        raise InvalidInputError(
            f"{_INVALID}Dataframe split format must have 'data' field and optionally "
            f"'columns' and 'index' fields. Got {sorted(keys)}.")
    data = value["data"]
    if not isinstance(data, list):
        raise _split_error(f"'data' must be a list of rows, got {_type_name(data)}")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        size = f"{len(index)} labels" if isinstance(index, list) else _type_name(index)
        raise _split_error(f"'index' must be a list of {len(data)} labels, one per row, "
                           f"got {size}")
    if value.get("columns") is None:
        return data, ORIENT_TENSOR  # pandas would number the columns 0..n-1
    names = _column_names(value["columns"])
    width = len(names)
    if width == 1 and not any(isinstance(row, list) for row in data):
        return {names[0]: list(data)}, ORIENT_COLUMNS  # one column given as a flat list
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            found = f"{len(row)} values" if isinstance(row, list) else _type_name(row)
            raise _split_error(f"row {i} must be a list of {width} values, got {found}")
    if not data:
        return {name: [] for name in names}, ORIENT_COLUMNS
    columns = zip(*data, strict=True)  # row lengths are checked above
    return {name: list(col) for name, col in zip(names, columns, strict=True)}, ORIENT_COLUMNS


def _all_dicts(items: list[Any], where: str) -> bool:
    """Whether ``items`` is a list of records; a mix of records and other values is an
    error (pandas cannot build a frame from it)."""
    dicts = sum(isinstance(item, dict) for item in items)
    if dicts and dicts != len(items):
        first = next(i for i, item in enumerate(items) if not isinstance(item, dict))
        raise InvalidInputError(
            f"{_INVALID}{where} mixes records (JSON objects) with other values: item "
            f"{first} is {_type_name(items[first])}")
    return dicts == len(items)


def _parse_records(value: Any) -> tuple[Any, str]:
    if not isinstance(value, list):
        got = "dictionary" if isinstance(value, dict) else f"type {_type_name(value)}"
        raise InvalidInputError(
            f"{_INVALID}Dataframe records format must be a list of records. Got {got}.")
    if _all_dicts(value, DF_RECORDS):
        return value, ORIENT_RECORDS
    return value, ORIENT_TENSOR  # rows without column names, as pandas numbers them


def _parse_tensor_input(value: Any, key: str) -> tuple[Any, str]:
    if value is None:
        raise InvalidInputError(f"{_INVALID}'{key}' is null; send the model input in it")
    if isinstance(value, list):
        return value, ORIENT_RECORDS if _all_dicts(value, key) else ORIENT_TENSOR
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        if len({len(v) for v in value.values()}) == 1:
            return value, ORIENT_COLUMNS
        if key == INSTANCES:  # MLflow checks this for the row-format `instances` only
            raise InvalidInputError(
                f"{_INVALID}The length of values for each input/column name are not the same")
    return value, ORIENT_TENSOR


def _parse_json(body: bytes, max_depth: int, allow_nan_literals: bool) -> ScoringRequest:
    document = _loads(body, allow_nan_literals)
    depth = _nesting_depth(body, max_depth)
    if depth > max_depth:
        raise MalformedRequestError(
            f"{_INVALID}The JSON nests {depth} levels deep; at most {max_depth} are allowed")
    if isinstance(document, list):
        raise InvalidInputError(f"{_INVALID}{REQUIRED_INPUT_FORMAT}. Received a list.")
    if not isinstance(document, dict):
        raise InvalidInputError(
            f"{_INVALID}{REQUIRED_INPUT_FORMAT}. Received unexpected input type "
            f"'{_type_name(document)}'.")
    present = [key for key in INPUT_FIELDS if key in document]
    if len(present) != 1:
        raise InvalidInputError(
            f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: "
            f"{_preview_keys(list(document))}. {_FORMAT_HINT}")
    params = document.get(PARAMS)
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise InvalidInputError(
            f"{_INVALID}Params must be a dictionary. Got type '{_type_name(params)}'.")
    key = present[0]
    value = document[key]
    if key == DF_SPLIT:
        payload, orient = _parse_split(value)
    elif key == DF_RECORDS:
        payload, orient = _parse_records(value)
    else:
        payload, orient = _parse_tensor_input(value, key)
    return ScoringRequest(payload=payload, params=params, orient=orient, source=key)


# --- CSV ---------------------------------------------------------------------------------


def _parse_csv(body: bytes) -> ScoringRequest:
    import pandas as pd

    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(
            f"{_INVALID}Ensure that input is a valid UTF-8 encoded string. Error: "
            f"'{exc.reason} at byte {exc.start}'") from None
    try:
        # Nullable dtypes keep integers integral next to missing cells and give None for
        # them, instead of float64 with NaN.
        frame = pd.read_csv(io.StringIO(text), dtype_backend="numpy_nullable")
    except Exception as exc:  # noqa: BLE001 - pandas raises many types for bad CSV
        raise InvalidInputError(f"{_CSV_HINT} Error: '{exc}'") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas silently takes extra leading fields as an index; refuse the misalignment.
        raise InvalidInputError(
            f"{_CSV_HINT} Error: 'rows have more fields than the header has names'")
    records: list[dict[str, Any]] = frame.to_dict(orient="records")
    return ScoringRequest(payload=records, params={}, orient=ORIENT_RECORDS, source="csv")


# --- public API --------------------------------------------------------------------------


def parse_scoring_request(body: bytes, content_type: str | None, *, max_depth: int = 64,
                          allow_nan_literals: bool = False) -> ScoringRequest:
    """Parse an MLflow ``/invocations`` body.

    Args:
        body: the raw request body.
        content_type: the ``Content-Type`` header, or None when absent.
        max_depth: the deepest nesting of JSON arrays and objects accepted; the top-level
            object is depth 1.
        allow_nan_literals: accept the non-standard ``NaN`` (read as null, a missing value)
            and ``Infinity``/``-Infinity`` (read as floats) that MLflow's own clients and
            Python's ``json`` module write. Off by default: strict JSON only.

    Raises:
        UnsupportedMediaTypeError: not JSON or CSV, or a charset other than UTF-8 (415).
        MalformedRequestError: not JSON, not UTF-8, ``NaN``/``Infinity`` literals, or
            nesting deeper than ``max_depth`` (400).
        InvalidInputError: an empty body, not exactly one input field, a badly shaped
            field, ``params`` not a dictionary, or a CSV pandas cannot read (400).
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be at least 1, got {max_depth}")
    media = _media_type(content_type)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if not body.strip():
        raise InvalidInputError(
            f"{_INVALID}The request body is empty; send "
            + ("a CSV table with a header row" if media == CONTENT_TYPE_CSV
               else "a JSON dictionary with one of the input fields"))
    if media == CONTENT_TYPE_CSV:
        return _parse_csv(body)
    return _parse_json(body, max_depth, allow_nan_literals)


def _encode_bytes(value: bytes | bytearray) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _array_to_jsonable(array: np.ndarray[Any, Any]) -> Any:
    kind = array.dtype.kind
    if kind == "M":
        return np.datetime_as_string(array).tolist()
    if kind == "m":
        return (array / np.timedelta64(1, "s")).tolist()  # seconds, as floats
    if kind == "S":
        return np.vectorize(_encode_bytes, otypes=[object])(array).tolist() if array.size \
            else array.tolist()
    if kind == "c":
        raise TypeError("complex numbers")
    return array.tolist()


def _default(value: Any) -> Any:
    """orjson's fallback for what it cannot write itself."""
    if isinstance(value, np.ndarray):
        return _array_to_jsonable(value)
    if isinstance(value, np.generic):
        if isinstance(value, (np.datetime64, np.timedelta64, np.bytes_)):
            return _array_to_jsonable(np.asarray(value))
        item = value.item()
        if isinstance(item, complex):
            raise TypeError("complex numbers")
        return item
    if isinstance(value, (bytes, bytearray)):
        return _encode_bytes(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):  # pandas Timestamp and friends
        return None if value != value else isoformat()  # NaT
    if value is getattr(sys.modules.get("pandas"), "NA", object()):
        return None
    raise TypeError(type(value).__name__)


def _predictions_to_jsonable(predictions: Any) -> Any:
    if isinstance(predictions, np.ndarray):
        return _array_to_jsonable(predictions)
    pd = sys.modules.get("pandas")
    if pd is not None:
        if isinstance(predictions, pd.DataFrame):
            return predictions.to_dict(orient="records")  # as MLflow
        if isinstance(predictions, pd.Series):
            return predictions.to_frame().to_dict(orient="records")  # as MLflow
    return predictions


def build_scoring_response(predictions: np.ndarray[Any, Any] | Any,
                           probabilities: np.ndarray[Any, Any] | None = None) -> bytes:
    """``{"predictions": [...]}`` as MLflow answers it.

    ``probabilities`` is accepted for symmetry with the other protocols and ignored: the
    MLflow scoring server returns only what ``predict`` returned. A DataFrame or Series is
    written as records, as MLflow does. NaN and infinities become ``null`` (strict JSON).

    Raises:
        PredictionFailedError: the predictions cannot be written as JSON.
    """
    del probabilities
    try:
        return orjson.dumps({"predictions": _predictions_to_jsonable(predictions)},
                            default=_default, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PredictionFailedError(f"its output cannot be written as JSON ({exc})") from None


def error_body(code: str, message: str) -> bytes:
    """An MLflow error body: ``{"error_code": code, "message": message}``."""
    return orjson.dumps({"error_code": code, "message": message})


def status_for(exc: BaseException) -> int | None:
    """The status :data:`STATUS_FOR` gives ``exc`` (subclasses included), else None."""
    for cls in type(exc).__mro__:
        if issubclass(cls, Exception) and cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return None


def error_response(exc: BaseException) -> tuple[int, bytes] | None:
    """``(status, body)`` for an error this protocol answers itself, else None (the caller
    then applies its own mapping, e.g. 413, 429, 503, 500)."""
    status = status_for(exc)
    if status is None:
        return None
    message = getattr(exc, "message", None) or str(exc)
    return status, error_body(ERROR_CODE_FOR_STATUS[status], message)

