"""The Open Inference Protocol (KServe V2) REST codec, with Triton's binary tensor extension.

Pure functions from bytes and headers to Python objects and back; no HTTP framework here.

Decisions worth knowing:

* JSON is parsed with orjson, which follows RFC 8259 like Triton's own parser: the literals
  ``NaN``, ``Infinity`` and ``-Infinity`` are rejected (:class:`MalformedRequestError`, "NaN/
  Infinity literals are not JSON"), and so is a number that overflows a double (``1e999``).
  NaN and infinities reach a model only as raw floats in binary tensor data (FP16/32/64);
  whether a column may hold them is the signature validator's call. In JSON responses
  orjson writes NaN and infinities as ``null`` (which ``tritonclient`` reads back as NaN).
* Nesting deeper than ``max_depth`` containers (counting the request object as level 1)
  is a :class:`MalformedRequestError`; orjson itself stops at 1024 levels.
* Data may be flat row-major or nested to any depth (like Triton): only the element count
  must equal the product of the shape. Types are strict: ``true``/``false`` only for BOOL,
  integers (not booleans, not ``1.0``) within range for INT*/UINT*, numbers for FP* (within
  range of the type), strings for BYTES.
* Binary BYTES elements arrive as bytes; a tensor whose elements are all valid UTF-8 is
  handed on as ``str`` (like JSON BYTES data), otherwise as ``bytes``.
* The binary part must be exactly the concatenation of the inputs' ``binary_data_size``
  bytes, in input order: short or trailing bytes are framing errors.
* Shared memory and the classification extension are refused, not silently ignored.
* Every model has the outputs ``predict`` and, with probabilities, ``predict_proba``:
  model metadata lists exactly the outputs ``infer`` answers (:func:`model_outputs`). A
  request that names outputs gets those, in its order; an unknown name is a
  :class:`MalformedRequestError` (400) that lists the model's outputs.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelhost.entities import ColumnType, Signature, TensorSpec
from modelhost.errors import InvalidInputError, MalformedRequestError, PredictionFailedError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "PREDICT",
    "PREDICT_PROBA",
    "InferRequest",
    "OutputSpec",
    "RequestedOutput",
    "Tensor",
    "build_infer_response",
    "check_requested",
    "conform",
    "error_body",
    "model_metadata",
    "model_outputs",
    "parse_infer_request",
    "server_metadata",
    "to_model_input",
]

_Array = npt.NDArray[Any]
ModelInput = dict[str, list[Any]] | dict[str, _Array] | _Array

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_SUPPORTED = ", ".join(DATATYPES)
_BY_DTYPE: dict[np.dtype[Any], str] = {d: n for n, d in DATATYPES.items() if n != "BYTES"}

_COLUMN_DATATYPES: dict[ColumnType, str] = {
    ColumnType.DOUBLE: "FP64",
    ColumnType.FLOAT: "FP32",
    ColumnType.LONG: "INT64",
    ColumnType.INTEGER: "INT32",
    ColumnType.BOOLEAN: "BOOL",
    ColumnType.STRING: "BYTES",
    ColumnType.DATETIME: "BYTES",
}

_ORJSON_MAX_DEPTH = 1024
_DATA_DEPTH = 4  # request object > "inputs" list > input object > "data" list
_FIELD_DEPTH = 4  # request object > "inputs" list > input object > e.g. "parameters" object
_U32 = struct.Struct("<I")
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor; ``data`` already has ``shape``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: _Array
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` is resolved against the request default."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput]
    parameters: dict[str, Any]
    binary_output_default: bool


# --- requests -------------------------------------------------------------------------


def parse_infer_request(body: bytes, *, header_length: int | None,
                        max_depth: int = 64) -> InferRequest:
    """Decode an inference request body.

    ``header_length`` is the value of the ``Inference-Header-Content-Length`` header: the
    body is then that many bytes of JSON followed by the inputs' binary data. Without it
    the whole body is JSON.

    Raises:
        MalformedRequestError: the body cannot be parsed or its binary framing is wrong.
        InvalidInputError: valid JSON that breaks the protocol (names the input).
    """
    view = memoryview(body)
    if header_length is None:
        header, binary_start = view, len(view)
    else:
        if header_length <= 0:
            raise MalformedRequestError(
                f"{HEADER_LENGTH} must be a positive number of bytes, got {header_length}")
        if header_length > len(view):
            raise MalformedRequestError(
                f"{HEADER_LENGTH} is {header_length} bytes but the body has only "
                f"{len(view)} bytes")
        header, binary_start = view[:header_length], header_length
    doc = _loads(header, max_depth)
    if not isinstance(doc, dict):
        raise InvalidInputError("the inference request must be a JSON object")

    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"'id' must be a string, got {_describe(request_id)}")
    for key, value in doc.items():
        if key != "inputs" and isinstance(value, dict | list):
            _check_depth(value, 2, max_depth)
    parameters = _parameters(doc.get("parameters"), "the request")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise InvalidInputError("parameters.binary_data_output must be true or false")

    raw_inputs = doc.get("inputs")
    if raw_inputs is None:
        raise InvalidInputError("the inference request has no 'inputs'")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("'inputs' must be a non-empty list of input tensors")
    offset = binary_start
    inputs: list[Tensor] = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_inputs):
        tensor, offset = _parse_input(raw, position, view, offset,
                                      header_length is not None, max_depth)
        if tensor.name in seen:
            raise InvalidInputError(f"input {tensor.name!r} appears more than once")
        seen.add(tensor.name)
        inputs.append(tensor)
    if offset != len(view):
        raise MalformedRequestError(
            f"the body has {len(view) - offset} bytes of binary data that no input claims; "
            "the inputs' parameters.binary_data_size must add up to the bytes after the "
            "JSON header")

    outputs = _parse_outputs(doc.get("outputs"), binary_default)
    return InferRequest(id=request_id, inputs=inputs, outputs=outputs, parameters=parameters,
                        binary_output_default=binary_default)


def _loads(data: memoryview, max_depth: int) -> Any:
    if not len(data):
        raise MalformedRequestError("the request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequestError(_json_problem(data, exc, max_depth)) from None


def _json_problem(data: memoryview, exc: orjson.JSONDecodeError, max_depth: int) -> str:
    if "depth" in exc.msg or "recursion" in exc.msg.lower():
        limit = min(max_depth, _ORJSON_MAX_DEPTH)
        return f"the request JSON is nested deeper than the limit of {limit} levels"
    if "infinity" in exc.msg:
        return (f"the request JSON holds a number too large for a double at line "
                f"{exc.lineno} column {exc.colno}; send infinite FP values as binary tensor "
                "data (NaN/Infinity literals are not JSON)")
    text = bytes(data).decode("utf-8", "replace")
    token, before = text[exc.pos:exc.pos + 8], text[exc.pos - 1:exc.pos]
    if token.startswith(("NaN", "nan", "Infinity", "inf", "Inf")) or (
            before == "-" and token[:3].lower() == "inf"):
        return ("NaN/Infinity literals are not JSON; send NaN or infinite FP values as "
                "binary tensor data (parameters.binary_data_size)")
    return (f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}")


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"'parameters' of {where} must be a JSON object, "
                                f"got {_describe(value)}")
    return value


def _check_depth(value: Any, depth: int, max_depth: int) -> None:
    """Raise when a container nests deeper than ``max_depth`` (``value`` is at ``depth``)."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if level > max_depth:
            raise MalformedRequestError(
                f"the request JSON is nested deeper than the limit of {max_depth} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, dict | list))


def _parse_input(raw: Any, position: int, body: memoryview, offset: int, framed: bool,
                 max_depth: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise InvalidInputError(f"inputs[{position}] must be a JSON object, "
                                f"got {_describe(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"inputs[{position}] needs a non-empty string 'name'")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInputError(f"input {name!r} needs a string 'datatype' (one of "
                                f"{_SUPPORTED})")
    if datatype not in DATATYPES:
        raise InvalidInputError(f"input {name!r} has unknown datatype {datatype!r}; "
                                f"supported: {_SUPPORTED}")
    shape = _shape(raw.get("shape"), name)
    for key, value in raw.items():
        if key != "data" and isinstance(value, dict | list):
            _check_depth(value, _FIELD_DEPTH, max_depth)
    parameters = _parameters(raw.get("parameters"), f"input {name!r}")
    if any(key in parameters for key in _SHARED_MEMORY):
        raise InvalidInputError(f"input {name!r} uses shared memory, which this server "
                                "does not support; send the data in the body")
    count = math.prod(shape)
    size = parameters.get("binary_data_size")
    has_data = "data" in raw
    if size is not None:
        if has_data:
            raise InvalidInputError(f"input {name!r} has both 'data' and "
                                    "parameters.binary_data_size; send one of them")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInputError(f"input {name!r}: parameters.binary_data_size must be a "
                                    f"non-negative integer, got {_describe(size)}")
        if not framed:
            raise MalformedRequestError(
                f"input {name!r} declares binary_data_size but the request has no "
                f"{HEADER_LENGTH} header, so there is no binary data")
        if offset + size > len(body):
            raise MalformedRequestError(
                f"the binary data of input {name!r} is truncated: binary_data_size is "
                f"{size} bytes but only {len(body) - offset} remain in the body")
        flat = _decode_binary(body[offset:offset + size], name, datatype, shape, count)
        offset += size
    elif has_data:
        flat = _decode_json(raw["data"], name, datatype, shape, count, max_depth)
    else:
        raise InvalidInputError(f"input {name!r} has neither 'data' nor "
                                "parameters.binary_data_size")
    tensor = Tensor(name=name, datatype=datatype, shape=shape, data=flat.reshape(shape),
                    parameters=parameters)
    return tensor, offset


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidInputError(f"input {name!r} needs a 'shape' that is a list of integers, "
                                f"got {_describe(value)}")
    if any(d < 0 for d in value):
        raise InvalidInputError(f"input {name!r} has shape {value}: dimensions of a request "
                                "tensor must be 0 or more")
    return tuple(value)


def _decode_binary(raw: memoryview, name: str, datatype: str, shape: tuple[int, ...],
                   count: int) -> _Array:
    if datatype == "BYTES":
        return _decode_bytes_elements(raw, name, shape, count)
    dtype = DATATYPES[datatype]
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise InvalidInputError(
            f"input {name!r}: binary_data_size is {len(raw)} bytes but shape {list(shape)} "
            f"of {datatype} needs {needed} bytes")
    wire = np.dtype(np.uint8) if datatype == "BOOL" else dtype.newbyteorder("<")
    array = np.frombuffer(raw, dtype=wire, count=count)
    if datatype == "BOOL":
        bad = np.flatnonzero(array > 1)
        if bad.size:
            raise InvalidInputError(
                f"input {name!r}: binary BOOL element {int(bad[0])} is byte "
                f"{int(array[bad[0]])}; BOOL bytes must be 0 or 1")
    return array.astype(dtype, copy=True)


def _decode_bytes_elements(raw: memoryview, name: str, shape: tuple[int, ...],
                           count: int) -> _Array:
    items: list[bytes] = []
    pos, end = 0, len(raw)
    while pos < end:
        if pos + 4 > end:
            raise MalformedRequestError(
                f"input {name!r}: BYTES element {len(items)} is truncated (its 4-byte "
                "length prefix is cut off)")
        (length,) = _U32.unpack_from(raw, pos)
        pos += 4
        if pos + length > end:
            raise MalformedRequestError(
                f"input {name!r}: BYTES element {len(items)} is truncated: its prefix says "
                f"{length} bytes but only {end - pos} remain in binary_data_size")
        items.append(bytes(raw[pos:pos + length]))
        pos += length
    if len(items) != count:
        raise InvalidInputError(
            f"input {name!r} holds {len(items)} BYTES elements but shape {list(shape)} needs "
            f"{count}")
    try:
        return _object_array([item.decode("utf-8") for item in items])
    except UnicodeDecodeError:
        return _object_array(items)


def _object_array(values: Sequence[Any]) -> _Array:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _decode_json(data: Any, name: str, datatype: str, shape: tuple[int, ...], count: int,
                 max_depth: int) -> _Array:
    if not isinstance(data, list):
        raise InvalidInputError(f"input {name!r}: 'data' must be a JSON array, "
                                f"got {_describe(data)}")
    flat, types = _flatten(data, name, max_depth)
    if len(flat) != count:
        raise InvalidInputError(
            f"input {name!r} has {len(flat)} data elements but shape {list(shape)} needs "
            f"{count}")
    if datatype == "BYTES":
        _require_types(flat, types, {str}, name, datatype, "strings")
        return _object_array(flat)
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        _require_types(flat, types, {bool}, name, datatype, "true or false")
        return np.array(flat, dtype=dtype)
    if dtype.kind in "iu":
        _require_types(flat, types, {int}, name, datatype, "integers")
        info = np.iinfo(dtype)
        if flat and (min(flat) < info.min or max(flat) > info.max):
            index, value = next((i, v) for i, v in enumerate(flat)
                                if not info.min <= v <= info.max)
            raise InvalidInputError(
                f"input {name!r}: element {index} is {value}, out of range for {datatype} "
                f"({info.min}..{info.max})")
        return np.array(flat, dtype=dtype)
    _require_types(flat, types, {int, float}, name, datatype, "numbers")
    array = np.array(flat, dtype=np.float64)
    limit = float(np.finfo(dtype).max)
    if array.size and dtype != np.float64:
        too_big = np.abs(array) > limit
        if too_big.any():
            index = int(np.argmax(too_big))
            raise InvalidInputError(
                f"input {name!r}: element {index} is {flat[index]!r}, out of range for "
                f"{datatype} (largest magnitude {limit:g})")
    return array.astype(dtype)


def _flatten(data: list[Any], name: str, max_depth: int) -> tuple[list[Any], set[type]]:
    """Row-major leaves of nested lists, with the set of their Python types."""
    types: set[type] = set(map(type, data))
    level = _DATA_DEPTH
    while True:  # the usual case: every item at a level is a list (rows), all in C
        if level > max_depth:
            raise _too_deep(name, max_depth)
        if list not in types:
            return data, types
        if len(types) > 1:
            break
        data = list(chain.from_iterable(data))
        types = set(map(type, data))
        level += 1
    return _flatten_ragged(data, name, level, max_depth)


def _flatten_ragged(data: list[Any], name: str, depth: int,
                    max_depth: int) -> tuple[list[Any], set[type]]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        level = depth + len(stack) - 1  # depth of the list being walked
        if level > max_depth:
            raise _too_deep(name, max_depth)
        for item in stack[-1]:
            if type(item) is list:
                inner = set(map(type, item))
                if list in inner:
                    stack.append(iter(item))
                    break
                if level + 1 > max_depth:
                    raise _too_deep(name, max_depth)
                out.extend(item)
            else:
                out.append(item)
        else:
            stack.pop()
    return out, set(map(type, out))


def _too_deep(name: str, max_depth: int) -> MalformedRequestError:
    return MalformedRequestError(
        f"input {name!r}: 'data' makes the request JSON nest deeper than the limit of "
        f"{max_depth} levels")


def _require_types(flat: list[Any], types: set[type], allowed: set[type], name: str,
                   datatype: str, wanted: str) -> None:
    if types <= allowed:
        return
    index, value = next((i, v) for i, v in enumerate(flat) if type(v) not in allowed)
    raise InvalidInputError(f"input {name!r}: element {index} is {_describe(value)}, but "
                            f"{datatype} data must be {wanted}")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value!r} (a number with a fraction or exponent)"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parse_outputs(raw: Any, binary_default: bool) -> list[RequestedOutput]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInputError(f"'outputs' must be a list, got {_describe(raw)}")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidInputError(f"outputs[{position}] must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"outputs[{position}] needs a non-empty string 'name'")
        if name in seen:
            raise InvalidInputError(f"output {name!r} is requested more than once")
        seen.add(name)
        parameters = _parameters(item.get("parameters"), f"output {name!r}")
        if any(key in parameters for key in _SHARED_MEMORY):
            raise InvalidInputError(f"output {name!r} asks for shared memory, which this "
                                    "server does not support")
        if parameters.get("classification"):
            raise InvalidInputError(f"output {name!r} asks for classification, which this "
                                    "server does not support; request the raw output")
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidInputError(f"output {name!r}: parameters.binary_data must be true "
                                    "or false")
        outputs.append(RequestedOutput(name=name, binary=binary))
    return outputs


# --- model input ----------------------------------------------------------------------


def to_model_input(req: InferRequest, signature: Signature | None) -> ModelInput:
    """The request's tensors in the shape the signature validator expects.

    Column signatures: one input per column (shape ``[n]`` or ``[n, 1]``), or one 2-D input
    ``[n, k]`` whose k columns are the signature's columns in order (or its required
    columns, when k counts only those); either way a dict of column -> Python list.
    Tensor signatures and no signature: one input gives its array, several a dict.

    Raises:
        InvalidInputError: the inputs cannot be mapped onto the signature.
    """
    if signature is not None and signature.columns and not signature.is_tensor:
        return _to_columns(req.inputs, signature)
    if len(req.inputs) == 1:
        return req.inputs[0].data
    if signature is not None and signature.is_tensor:
        names = [_tensor_name(s, i) for i, s in enumerate(signature.inputs)
                 if isinstance(s, TensorSpec)]
        unknown = [t.name for t in req.inputs if t.name not in names]
        if unknown:
            raise InvalidInputError(
                f"input {unknown[0]!r} is not an input of this model; expected inputs: "
                f"{', '.join(names)}")
    return {t.name: t.data for t in req.inputs}


def _to_columns(inputs: list[Tensor], signature: Signature) -> dict[str, list[Any]]:
    columns = signature.columns
    names = [c.name for c in columns]
    known = set(names)
    if all(t.name in known for t in inputs):
        result: dict[str, list[Any]] = {}
        rows: tuple[str, int] | None = None
        for tensor in inputs:
            shape = tensor.shape
            if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
                raise InvalidInputError(
                    f"input {tensor.name!r} has shape {list(shape)}; an input for one column "
                    "must have shape [n] or [n, 1]")
            values = _column_values(tensor, tensor.data.reshape(-1))
            if rows is not None and len(values) != rows[1]:
                raise InvalidInputError(
                    f"input {tensor.name!r} has {len(values)} rows but input {rows[0]!r} "
                    f"has {rows[1]}; every column needs the same number of rows")
            rows = rows or (tensor.name, len(values))
            result[tensor.name] = values
        return result
    required = [c.name for c in columns if c.required]
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        tensor = inputs[0]
        width = tensor.shape[1]
        targets = names if width == len(names) else required if width == len(required) \
            else None
        if targets is None:
            raise InvalidInputError(
                f"input {tensor.name!r} has {width} columns but the signature has "
                f"{len(names)} ({', '.join(names)})"
                + (f", {len(required)} of them required" if len(required) != len(names)
                   else ""))
        return {column: _column_values(tensor, tensor.data[:, j])
                for j, column in enumerate(targets)}
    unknown = next(t.name for t in inputs if t.name not in known)
    raise InvalidInputError(
        f"input {unknown!r} is not a column of this model; send one input per column named "
        f"{', '.join(names)} (shape [n]), or a single input of shape [n, {len(names)}]")


def _column_values(tensor: Tensor, array: _Array) -> list[Any]:
    values: list[Any] = array.tolist()
    if tensor.datatype == "BYTES":
        for index, value in enumerate(values):
            if isinstance(value, bytes):
                try:
                    values[index] = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidInputError(
                        f"input {tensor.name!r}: element {index} is not valid UTF-8 text"
                    ) from None
    return values


# --- responses ------------------------------------------------------------------------


def build_infer_response(*, model_name: str, model_version: str, request_id: str | None,
                         outputs: list[tuple[str, _Array]], requested: list[RequestedOutput],
                         binary_default: bool, parameters: dict[str, Any] | None = None,
                         ) -> tuple[bytes, dict[str, str]]:
    """The response body and the headers to send with it.

    Raises:
        MalformedRequestError: a requested output does not exist.
        InvalidInputError: bytes that are not UTF-8 were asked for as JSON.
        PredictionFailedError: an output's dtype has no V2 datatype.
    """
    available = dict(outputs)
    if requested:
        missing = [r.name for r in requested if r.name not in available]
        if missing:
            raise _unknown_output(missing[0], list(available))
        chosen = [(r.name, available[r.name], r.binary) for r in requested]
    else:
        chosen = [(name, array, binary_default) for name, array in outputs]

    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, value, binary in chosen:
        array = np.asarray(value)
        datatype, array = _output_datatype(name, array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype,
                                 "shape": list(array.shape)}
        if binary:
            blob = _encode_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(name, array, datatype)
        entries.append(entry)

    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if any(binary for _, _, binary in chosen):
        return header + b"".join(blobs), {
            HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}
    return header, {"Content-Type": "application/json"}


def _output_datatype(name: str, array: _Array) -> tuple[str, _Array]:
    kind = array.dtype.kind
    if kind in "OUS":
        return "BYTES", array
    if kind == "M":
        return "BYTES", np.datetime_as_string(array).astype(object)
    if kind == "f" and array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    native = array.dtype.newbyteorder("=")
    datatype = _BY_DTYPE.get(native)
    if datatype is None:
        raise PredictionFailedError(
            f"output {name!r} has dtype {array.dtype}, which the Open Inference Protocol "
            "cannot carry")
    return datatype, array.astype(native, copy=False)


def _encode_binary(array: _Array, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.reshape(-1).tolist():
            raw = _element_bytes(value)
            parts.append(_U32.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    wire = DATATYPES[datatype] if datatype == "BOOL" else DATATYPES[datatype].newbyteorder("<")
    return np.ascontiguousarray(array, dtype=wire).tobytes()


def _element_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    return (value if isinstance(value, str) else str(value)).encode("utf-8")


def _json_data(name: str, array: _Array, datatype: str) -> Any:
    if datatype != "BYTES":
        return np.ascontiguousarray(array.reshape(-1))
    values: list[Any] = array.reshape(-1).tolist()
    for index, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                values[index] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInputError(
                    f"output {name!r} holds bytes that are not UTF-8 text and cannot be sent "
                    "as JSON; request it with parameters.binary_data = true") from None
        elif value is not None and not isinstance(value, str):
            values[index] = str(value)
    return values


# --- metadata -------------------------------------------------------------------------

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


@dataclass(frozen=True)
class OutputSpec:
    """One output of ``infer``, as model metadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def model_outputs(signature: Signature | None, *, has_proba: bool,
                  classes: Sequence[Any] | None) -> list[OutputSpec]:
    """The outputs ``infer`` answers: ``predict`` (what the model's predict returns, typed
    by the signature's outputs, else by the class labels, else FP64) and, for models with
    probabilities, ``predict_proba`` (FP64, one column per class)."""
    outputs = [_predict_output(signature.outputs if signature else (), classes)]
    if has_proba:
        width = len(classes) if classes is not None else -1
        outputs.append(OutputSpec(PREDICT_PROBA, "FP64", (-1, width)))
    return outputs


def _predict_output(specs: Sequence[Any], classes: Sequence[Any] | None) -> OutputSpec:
    if len(specs) == 1 and isinstance(specs[0], TensorSpec):
        return OutputSpec(PREDICT, _tensor_datatype(specs[0].dtype), tuple(specs[0].shape))
    if specs:  # columns: one column is a vector, several a matrix of one type
        types = {_spec_metadata(s, i)["datatype"] for i, s in enumerate(specs)}
        datatype = types.pop() if len(types) == 1 else "BYTES"
        return OutputSpec(PREDICT, datatype, (-1,) if len(specs) == 1 else (-1, len(specs)))
    if classes is not None:
        return OutputSpec(PREDICT, _output_datatype(PREDICT, np.asarray(classes))[0], (-1,))
    return OutputSpec(PREDICT, "FP64", (-1,))


def check_requested(requested: Sequence[RequestedOutput], outputs: Sequence[OutputSpec]) -> None:
    """Raise when the request names an output the model does not have.

    Raises:
        MalformedRequestError: names the unknown output and the known ones.
    """
    known = [o.name for o in outputs]
    for output in requested:
        if output.name not in known:
            raise _unknown_output(output.name, known)


def _unknown_output(name: str, known: Sequence[str]) -> MalformedRequestError:
    return MalformedRequestError(
        f"requested output {name!r} does not exist; the outputs of this model are: "
        f"{', '.join(known) or 'none'}")


def conform(array: _Array, output: OutputSpec) -> _Array:
    """``array`` in the numeric datatype that metadata declares for ``output`` (a cached
    answer comes back from JSON as int64 or float64), when that cast keeps its kind."""
    target = DATATYPES.get(output.datatype)
    if target is None or output.datatype in ("BYTES", "BOOL") or array.dtype == target:
        return array
    if array.dtype.kind in "iuf" and np.can_cast(array.dtype, target, casting="same_kind"):
        return array.astype(target)
    return array


def model_metadata(*, name: str, versions: list[str], platform: str,
                   signature: Signature | None,
                   outputs: Sequence[OutputSpec]) -> dict[str, Any]:
    """Model metadata; unnamed input tensors are called by their position ("0", "1", ...).

    ``outputs`` are those of :func:`model_outputs`: the names ``infer`` answers."""
    inputs = [_spec_metadata(s, i) for i, s in enumerate(signature.inputs)] if signature \
        else []
    return {"name": name, "versions": list(versions), "platform": platform,
            "inputs": inputs, "outputs": [o.to_dict() for o in outputs]}


def _spec_metadata(spec: Any, index: int) -> dict[str, Any]:
    if isinstance(spec, TensorSpec):
        return {"name": _tensor_name(spec, index), "datatype": _tensor_datatype(spec.dtype),
                "shape": list(spec.shape)}
    return {"name": spec.name, "datatype": _COLUMN_DATATYPES[spec.type], "shape": [-1]}


def _tensor_name(spec: TensorSpec, index: int) -> str:
    return spec.name or str(index)


def _tensor_datatype(dtype: str) -> str:
    try:
        parsed = np.dtype(dtype)
    except TypeError:
        return "BYTES"
    if parsed.kind in "OUSM":
        return "BYTES"
    return _BY_DTYPE.get(parsed.newbyteorder("="), "BYTES")


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "modelhost", "version": version, "extensions": ["binary_tensor_data"]}


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
