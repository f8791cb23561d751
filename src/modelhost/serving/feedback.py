"""``POST /v1/feedback``: ground-truth labels for logged predictions (PRODUCT.md §3.8)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from modelhost.errors import InvalidInputError, NotFoundError
from modelhost.monitoring import FeedbackResult, FeedbackService
from modelhost.monitoring.feedback import MAX_ITEMS
from modelhost.serving.guard import MODELS_SCOPE_KEY


class FeedbackRequest(BaseModel):
    """One label (`request_id`, `label`) or many (`items`). Items are checked one by one
    (the service reports each refused one), so their fields are not typed here."""

    model_config = ConfigDict(extra="forbid")

    request_id: Any = Field(default=None, description="The X-Request-Id of a prediction.")
    label: Any = Field(default=None, description="The true value: one per row predicted "
                       "(a single value for a one-row request).")
    items: list[Any] | None = Field(default=None, max_length=MAX_ITEMS,
                                    description='[{"request_id": ..., "label": ...}, ...]')


def install(api: FastAPI, service: FeedbackService | None) -> None:
    @api.post("/v1/feedback", tags=["monitoring"], status_code=202)
    async def feedback(body: FeedbackRequest, request: Request) -> JSONResponse:
        """Labels for logged predictions, joined by request id. 202 with `accepted` (and
        `rejected`, per item, when some were refused); a lone label that is refused
        answers 404 or 422 like any error, and so does a call whose every item is."""
        if service is None:
            raise NotFoundError("the prediction log is off on this server "
                                "(MODELHOST_PREDICTION_LOG=false): there is nothing to "
                                "join feedback to")
        single = body.items is None
        if single:
            if body.request_id is None:
                raise InvalidInputError('send {"request_id": ..., "label": ...} or '
                                        '{"items": [...]}')
            pairs = [(body.request_id, body.label)]
        else:
            if body.request_id is not None or body.label is not None:
                raise InvalidInputError("send either request_id and label, or items")
            pairs = [(i.get("request_id"), i.get("label")) if isinstance(i, dict)
                     else (None, None) for i in body.items or []]
            if not pairs:
                raise InvalidInputError("'items' is empty")
        # A key limited to some models labels only their requests (others: unknown ids).
        result = await service.submit(pairs, models=request.scope.get(MODELS_SCOPE_KEY))
        _raise_if_nothing_accepted(result, single=single)
        answer: dict[str, Any] = {"accepted": result.accepted}
        if result.rejected:
            answer["rejected"] = [r.to_dict() for r in result.rejected]
        return JSONResponse(answer, status_code=202)


def _raise_if_nothing_accepted(result: FeedbackResult, *, single: bool) -> None:
    if result.accepted or not result.rejected:
        return
    details = [r.to_dict() for r in result.rejected]
    first = result.rejected[0]
    message = first.message if single else (
        f"no label was accepted; item {first.index}: {first.message}")
    if all(r.code == "not_found" for r in result.rejected):
        raise NotFoundError(message, details=() if single else details)
    raise InvalidInputError(message, details=() if single else details)
