"""What every HTTP request of the service goes through: counted by path and status, timed, and held to
the body limit (``serving.max_body_bytes``, ``serving.limits``).

A plain ASGI middleware (``app.add_middleware``): Starlette's ``BaseHTTPMiddleware`` would cost ~100 µs
a request. It runs on the event loop's thread, which is what ``ServiceMetrics``' lock-free counters need.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from driftloop.serving.limits import declared_length, limited

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from driftloop.serving.metrics import ServiceMetrics

__all__ = ["ObservedRequests"]


class ObservedRequests:
    """``app`` with each HTTP request observed in ``metrics`` and its body read at most to
    ``max_body_bytes`` (a route reading more gets ``BodyTooLarge``, which it answers with 413). A request
    that fails without answering counts as a 500."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        receive = limited(receive, self.max_body_bytes, declared_length(scope["headers"]))
        try:
            await self.app(scope, receive, observed)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - started)
