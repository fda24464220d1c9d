"""uvicorn's httptools protocol, with the scoring routes answered straight from the parser.

Under load a single-row prediction costs the service less than the ASGI machinery around it: per
request uvicorn builds a scope, an ``asyncio.Event``, a ``RequestResponseCycle`` and its receive/send
messages, checks every response header against two regular expressions, and writes the status line
and headers with one ``send`` system call and the body with another (two TCP segments on loopback,
two wake-ups of the client). :class:`ScoringProtocol` is ``HttpToolsProtocol`` except for a complete
``POST`` to one of ``ServiceApp.fast_routes``: it gathers the body, runs ``ServiceApp.respond`` (the
same handler, errors and metrics as the ASGI path, given the request's ``Content-Type``, its
``Authorization`` and the client's address, so tokens, roles and rate limits hold here too) in a task
and writes the whole response with one ``transport.write``. Everything else, and anything unusual about a
scoring request (``Expect: 100-continue``, an upgrade, a percent-encoded path, ``limit_concurrency``, a
request pipelined behind another on the same connection), takes uvicorn's own path unchanged.

What uvicorn's path does and this one keeps: keep-alive and its timeout, ``Connection: close`` and
HTTP/1.0, pipelined requests answered in order (a later request waits in uvicorn's queue until this
response is written), the ``date``/``server`` default headers, write back-pressure, graceful shutdown
waiting for the request's task, the access log when it is on.

A body over ``serving.max_body_bytes`` (``serving.limits``) is answered 413 as soon as it is known to
be: at the headers when ``Content-Length`` says so, else at the chunk that crosses the limit; what was
collected is dropped and the rest of the body is read and discarded, not kept. The answer says
``connection: close``, and the connection closes once the body has ended, or after uvicorn's keep-alive
timeout if the client goes on sending (closing at once, with unread data, would reset the connection
and the client might never read its 413).
"""

from __future__ import annotations

import http
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from driftloop.serving.app import ServiceApp
from driftloop.serving.limits import BodyTooLarge

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ScoringProtocol"]


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_AUTHORIZATION = b"authorization"


class _NoEvent:
    """What uvicorn sets on a cycle's ``message_event`` when the connection goes: nobody waits here."""

    def set(self) -> None:
        return None


class _Scoring:
    """A fast-path request in flight: the part of uvicorn's ``RequestResponseCycle`` the protocol reads
    (``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``) plus the body, its
    content type and the request's credentials."""

    __slots__ = (
        "authorization",
        "body",
        "content_type",
        "disconnected",
        "keep_alive",
        "path",
        "refused",
        "response_complete",
        "size",
    )
    message_event = _NoEvent()

    def __init__(
        self, path: str, keep_alive: bool, content_type: bytes | None, authorization: bytes | None
    ) -> None:
        self.path = path
        self.keep_alive = keep_alive
        self.content_type = content_type
        self.authorization = authorization
        self.body: list[bytes] = []
        self.size = 0
        self.response_complete = self.disconnected = self.refused = False


def _service_app(app: Any) -> ServiceApp | None:
    """The ``ServiceApp`` under uvicorn's wrappers (proxy headers, message logger), if that is what runs."""
    for _ in range(8):
        if isinstance(app, ServiceApp):
            return app
        app = getattr(app, "app", None)
    return None


class ScoringProtocol(HttpToolsProtocol):
    """``uvicorn.run(..., http=ScoringProtocol)``: see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = _service_app(self.app)
        self._headers_of: object = None  # the default-headers list last encoded (uvicorn renews it)
        self._headers = b""
        self._content_type: bytes | None = None  # of the request whose headers are being parsed
        self._content_length: bytes | None = None  # likewise
        self._authorization: bytes | None = None  # likewise

    def on_header(self, name: bytes, value: bytes) -> None:
        # /invocations reads its body by its content type; a body's declared length may be refused at
        # once; a protected route needs the bearer token. The first of each header counts, as in Starlette.
        size = len(name)
        if size == len(_CONTENT_TYPE):
            if self._content_type is None and name.lower() == _CONTENT_TYPE:
                self._content_type = value
        elif size == len(_CONTENT_LENGTH):
            if name.lower() == _CONTENT_LENGTH:  # the parser refuses two, or one that is not a number
                self._content_length = value
        elif size == len(_AUTHORIZATION) and self._authorization is None and name.lower() == _AUTHORIZATION:
            self._authorization = value
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # The next request on this connection starts afresh: no header of this one carries over.
        content_type, self._content_type = self._content_type, None
        length, self._content_length = self._content_length, None
        authorization, self._authorization = self._authorization, None
        path = self._scoring_path()
        if path is None:
            super().on_headers_complete()
            return
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        cycle = self.cycle = _Scoring(path, keep_alive, content_type, authorization)  # type: ignore[assignment]
        assert self.service is not None
        limit = self.service.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            self._refuse(cycle, BodyTooLarge(limit, int(length)))

    def _scoring_path(self) -> str | None:
        """The path when this request is a fast-path one (see the module docstring), else None."""
        if self.service is None or self.expect_100_continue or self.limit_concurrency is not None:
            return None
        if self.cycle is not None and not self.cycle.response_complete:  # pipelined: uvicorn queues it
            return None
        if self.parser.get_method() != b"POST" or self.parser.should_upgrade():
            return None
        raw = self.url.partition(b"?")[0]
        if b"%" in raw:
            return None
        path = self.root_path + raw.decode("ascii", "replace")
        return path if path in self.service.fast_routes else None

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle, _Scoring):
            super().on_body(body)
        elif not cycle.refused:  # a refused body is read and dropped
            cycle.size += len(body)
            assert self.service is not None
            if cycle.size > self.service.max_body_bytes:
                self._refuse(cycle, BodyTooLarge(self.service.max_body_bytes))
            else:
                cycle.body.append(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if not isinstance(cycle, _Scoring):
            super().on_message_complete()
            return
        if cycle.refused:  # answered already; the body has ended, so closing now loses the client nothing
            self.transport.close()
            return
        task = self.loop.create_task(self._answer(cycle))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _refuse(self, cycle: _Scoring, exc: BodyTooLarge) -> None:
        """413 for a body over the limit, now; the rest of the body is discarded (module docstring)."""
        assert self.service is not None
        cycle.refused, cycle.body, cycle.keep_alive = True, [], False
        status, media, payload = self.service.refuse(cycle.path, exc)
        if not self.transport.is_closing():
            self._write(cycle, status, media, payload)
            # The client may go on sending: the connection lingers at most the keep-alive timeout.
            self.loop.call_later(self.timeout_keep_alive, self.transport.close)
        cycle.response_complete = True

    async def _answer(self, cycle: _Scoring) -> None:
        assert self.service is not None
        body = cycle.body[0] if len(cycle.body) == 1 else b"".join(cycle.body)
        content_type = None if cycle.content_type is None else cycle.content_type.decode("latin-1")
        authorization = None if cycle.authorization is None else cycle.authorization.decode("latin-1")
        status, media, payload, extra = await self.service.respond(
            cycle.path, body, content_type, authorization, self.client[0] if self.client else None
        )
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()
        if cycle.disconnected or self.transport.is_closing():  # gone: its prediction is captured, that's all
            cycle.response_complete = True
            return
        self._write(cycle, status, media, payload, extra)
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _write(
        self,
        cycle: _Scoring,
        status: int,
        media: bytes,
        payload: bytes,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """The whole answer in one write, and its access-log line when that log is on. ``extra``: a
        refusal's own headers (``WWW-Authenticate``, ``Retry-After``); a scoring answer has none."""
        extra_lines = b"".join(name + b": " + value + b"\r\n" for name, value in extra) if extra else b""
        self.transport.write(
            b"".join((_STATUS_LINES[status], self._default_headers(), extra_lines, b"content-type: ", media,
                      b"\r\ncontent-length: %d\r\n" % len(payload),
                      b"\r\n" if cycle.keep_alive else b"connection: close\r\n\r\n", payload))
        )  # fmt: skip
        if self.access_log:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            self.access_logger.info('%s - "POST %s HTTP/1.1" %d', client, cycle.path, status)

    def _default_headers(self) -> bytes:
        """uvicorn's ``date`` and ``server`` headers, encoded once per renewal (once a second)."""
        current = self.server_state.default_headers
        if current is not self._headers_of:
            self._headers = b"".join(name + b": " + value + b"\r\n" for name, value in current)
            self._headers_of = current
        return self._headers
