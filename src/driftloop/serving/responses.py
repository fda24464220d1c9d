"""How the service answers: JSON serialised once with orjson, and driftloop's error shape.

A route renders a failed request as ``(status, content type, body)`` through an :class:`ErrorRenderer`:
driftloop's ``{"error", "detail"}`` (:func:`driftloop_error`) or MLflow's body on ``/invocations``
(``serving.mlflow_api.error``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson
from fastapi.responses import JSONResponse, Response

if TYPE_CHECKING:
    from driftloop.serving.access import Headers

__all__ = [
    "APPLICATION_JSON",
    "BadRequest",
    "ErrorRenderer",
    "ORJSONResponse",
    "Reply",
    "driftloop_error",
    "error_response",
]

APPLICATION_JSON = b"application/json"


class ORJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class BadRequest(Exception):  # noqa: N818 — control flow to a 4xx (or 503) answer
    """A request the service refuses with ``status``; ``errors`` name the bad fields, ``total`` counts them
    when ``errors`` lists only the first ones."""

    def __init__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors
        self.total = total


class ErrorRenderer(Protocol):
    """(status, message, field errors, their total when only the first are listed) → (status, content
    type, body) of the failed request."""

    def __call__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
    ) -> tuple[int, bytes, bytes]: ...


class Reply(NamedTuple):
    """What a scoring route answers: status, content type, body and any extra headers."""

    status: int
    content_type: bytes
    body: bytes
    headers: Headers = ()


def _error_body(message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["detail"] = errors
        if total is not None and total > len(errors):  # detail lists the first serving.max_field_errors
            body["invalid_fields"] = total
    return orjson.dumps(body)


def driftloop_error(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, total: int | None = None
) -> tuple[int, bytes, bytes]:
    """A failed request to a driftloop route: (status, content type, ``{"error", "detail"}``)."""
    return status, APPLICATION_JSON, _error_body(message, errors, total)


def error_response(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, headers: Headers = ()
) -> Response:
    """:func:`driftloop_error` as a FastAPI response, with a refusal's extra ``headers``."""
    return Response(
        _error_body(message, errors),
        status_code=status,
        media_type="application/json",
        headers={name.decode(): value.decode() for name, value in headers},
    )
