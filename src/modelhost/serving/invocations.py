"""MLflow's scoring protocol (``/invocations``) on top of the shared predictor."""

from __future__ import annotations

from typing import Any

from modelhost.entities import Signature
from modelhost.errors import InvalidInputError, ModelhostError
from modelhost.serving import errors as http_errors
from modelhost.serving.http import Reply
from modelhost.serving.predictor import Predictor, Trace
from modelhost.serving.protocols import mlflow


async def invocations(predictor: Predictor, name: str, body: bytes, headers: dict[str, str],
                      rid: str, trace: Trace) -> Reply:
    # MLflow's own client helpers write NaN for missing values; accept them as nulls.
    request = mlflow.parse_scoring_request(body, headers.get("content-type"),
                                           allow_nan_literals=True)
    trace.resolved = resolved = await predictor.resolve(
        name, None, headers.get("x-routing-key") or None)
    served = resolved.served
    payload = request.payload
    if request.orient == "tensor":
        payload = _rows_to_columns(payload, served.version.signature)
    trace.prediction = result = await predictor.predict(resolved, payload, request.params)
    return Reply(200, mlflow.build_scoring_response(result.predictions),
                 [(b"content-type", b"application/json"),
                  (b"x-model-version", served.version.version.encode()),
                  (b"x-request-id", rid.encode())])


def _rows_to_columns(payload: Any, signature: Signature | None) -> Any:
    """Rows of values (``instances: [[...], ...]``) mapped onto a column signature."""
    if signature is None or signature.is_tensor or not isinstance(payload, list):
        return payload
    columns = [c.name for c in signature.columns]
    if not all(isinstance(row, list) and len(row) == len(columns) for row in payload):
        raise InvalidInputError(f"each row must be a list of {len(columns)} values in the "
                                f"order {', '.join(columns)}")
    return {c: [row[i] for row in payload] for i, c in enumerate(columns)}


def error(exc: ModelhostError, rid: str) -> Reply:
    """MLflow's statuses (400/415) and body for bad input; ours for everything else."""
    mapped = mlflow.error_response(exc)
    if mapped is not None:
        status, body = mapped
    else:
        status = http_errors.status_for(exc)
        body = mlflow.error_body(exc.code.upper(), exc.message)
    return Reply(status, body, http_errors.error_headers(exc, rid))
