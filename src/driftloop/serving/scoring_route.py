"""The scoring routes as plain ASGI endpoints in FastAPI's router (decision 0047).

A scoring request is read as bytes and answered with bytes: no pydantic model, dependency solving or
``Response`` object on the path every prediction takes, which cost more than validating, scoring and
capturing a row. FastAPI still routes it, runs its middleware (request metrics and the body limit,
``serving.observed``) and renders an unexpected method as its 405; what the route accepts is described
in the OpenAPI document by ``serving.openapi``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from driftloop.errors import DriftloopError
from driftloop.serving.access import content_type_and_authorization, refusal_headers
from driftloop.serving.limits import BodyTooLarge, read_body
from driftloop.serving.responses import APPLICATION_JSON, BadRequest, Reply

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import Receive, Scope, Send

    from driftloop.auth import Gate
    from driftloop.serving.responses import ErrorRenderer

__all__ = ["ScoringRoute"]

log = logging.getLogger(__name__)


class ScoringRoute:
    """An ASGI endpoint for ``POST``: the body and its content type to ``handler`` (which returns the JSON
    answer, or raises ``BadRequest`` or a ``DriftloopError``), its answer or error (rendered by
    ``error``, the route's own shape) back. With a ``gate``, the request is admitted first for ``role``
    (its ``Authorization`` header and client address): a refusal is a 401, 403 or 429 in the route's
    shape with its challenge or ``Retry-After``. Never fails for a request's fault or a bug: a bug is a
    500 in the route's shape, with the traceback in the log."""

    def __init__(
        self,
        handler: Callable[[bytes, str | None], Awaitable[bytes]],
        error: ErrorRenderer,
        role: str,
        gate: Gate | None = None,
    ) -> None:
        self.handler = handler
        self.error = error
        self.role = role
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive)
        except BodyTooLarge as exc:  # the body limit (serving.observed), in this route's shape
            reply = Reply(*self.error(413, str(exc)))
        else:
            if body is None:  # the client left before its body came
                return
            content_type, authorization = content_type_and_authorization(scope["headers"])
            client = scope.get("client")
            reply = await self.answer(
                scope["path"], body, content_type, authorization, client[0] if client else None
            )
        headers = [
            (b"content-type", reply.content_type),
            (b"content-length", b"%d" % len(reply.body)),
            *reply.headers,
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def answer(
        self,
        path: str,
        body: bytes,
        content_type: str | None,
        authorization: str | None,
        client: str | None,
    ) -> Reply:
        """What to send for ``POST path`` with ``body`` of ``content_type`` (None without the header),
        from ``client`` with ``authorization`` (that header's value)."""
        try:
            if self.gate is not None:
                await self.gate.admit(self.role, authorization, client)
            return Reply(200, APPLICATION_JSON, await self.handler(body, content_type))
        except BadRequest as exc:
            return Reply(*self.error(exc.status, str(exc), exc.errors, exc.total))
        except DriftloopError as exc:
            return Reply(*self.error(exc.http_status, str(exc), None), refusal_headers(exc))
        except Exception:
            log.exception("unhandled error answering POST %s", path)
            return Reply(*self.error(500, "internal server error", None))
