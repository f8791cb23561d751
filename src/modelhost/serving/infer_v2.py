"""Open Inference Protocol v2 ``infer`` on top of the shared predictor."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelhost.errors import MalformedRequestError, ModelhostError
from modelhost.serving import errors as http_errors
from modelhost.serving.http import Reply
from modelhost.serving.pool import ServedVersion
from modelhost.serving.predictor import Predictor, Trace
from modelhost.serving.protocols import v2


async def infer(predictor: Predictor, name: str, ref: str | None, body: bytes,
                headers: dict[str, str], rid: str, trace: Trace) -> Reply:
    raw_length = headers.get(v2.HEADER_LENGTH.lower())
    header_length = None
    if raw_length is not None:
        if not raw_length.strip().isdigit():
            raise MalformedRequestError(f"{v2.HEADER_LENGTH} must be a whole number")
        header_length = int(raw_length)
    request = v2.parse_infer_request(body, header_length=header_length)
    trace.resolved = resolved = await predictor.resolve(
        name, ref, headers.get("x-routing-key") or None)
    served = resolved.served
    specs = outputs_of(served)
    v2.check_requested(request.outputs, specs)  # before the model runs
    payload = v2.to_model_input(request, served.version.signature)
    trace.prediction = result = await predictor.predict(resolved, payload, None)
    values = {v2.PREDICT: result.predictions, v2.PREDICT_PROBA: result.probabilities}
    outputs: list[tuple[str, Any]] = [
        (spec.name, v2.conform(np.asarray(values[spec.name]), spec)) for spec in specs
        if values[spec.name] is not None]
    data, extra = v2.build_infer_response(
        model_name=name, model_version=served.version.version, request_id=request.id,
        outputs=outputs, requested=request.outputs,
        binary_default=request.binary_output_default)
    reply_headers = [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    reply_headers += [(b"x-model-version", served.version.version.encode()),
                      (b"x-request-id", rid.encode())]
    return Reply(200, data, reply_headers)


def outputs_of(served: ServedVersion) -> list[v2.OutputSpec]:
    """The outputs ``infer`` answers for this loaded version (also its model metadata)."""
    return v2.model_outputs(served.version.signature, has_proba=served.model.has_proba,
                            classes=served.model.classes)


def error(exc: ModelhostError, rid: str) -> Reply:
    """The protocol's ``{"error": "..."}`` body with our status code."""
    return Reply(http_errors.status_for(exc), v2.error_body(exc.message),
                 http_errors.error_headers(exc, rid))
