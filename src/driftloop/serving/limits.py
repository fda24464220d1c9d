"""How much of a request the service takes in: a body over ``serving.max_body_bytes`` is refused with 413
while it is read, never buffered whole.

A body announced bigger than the limit (``Content-Length``) is refused before a byte of it is read; one
that arrives in chunks is counted as it comes and refused at the chunk that crosses the limit, so the
service never holds more than the limit of one request (a 300 MB body used to be read whole, 1.6 GB of
memory once parsed). :func:`limited` applies it to every route that reads its body, FastAPI's and the
scoring routes alike (``serving.observed`` wraps each request's ``receive`` with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import Message, Receive

__all__ = ["BodyTooLarge", "declared_length", "limited", "read_body"]


class BodyTooLarge(Exception):  # noqa: N818 — an outcome of reading a request, answered with 413
    """The request body is over ``limit`` bytes (``size``: its declared length, when it declared one)."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        told = f" ({size} bytes)" if size is not None else ""
        super().__init__(
            f"the request body{told} is over the limit of {limit} bytes (serving.max_body_bytes)"
        )
        self.limit = limit


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` of an ASGI scope's headers (names are lower case); None without a valid one."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive: Receive) -> bytes | None:
    """The request body, read as it comes: None when the client left before it was complete. Over the
    limit, :class:`BodyTooLarge` comes from ``receive`` when it is :func:`limited`."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def limited(receive: Receive, limit: int, declared: int | None) -> Receive:
    """``receive`` for an ASGI app that reads the body itself (FastAPI's routes): it raises
    :class:`BodyTooLarge` before reading anything when the ``declared`` length is over ``limit``, and
    otherwise once the bytes received exceed it. A route that never reads its body is not concerned."""
    size = 0

    async def receive_limited() -> Message:
        nonlocal size
        if declared is not None and declared > limit:
            raise BodyTooLarge(limit, declared)
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited
