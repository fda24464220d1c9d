"""What the service's HTTP layer needs around the auth gate: the request's credentials, and the headers
a refusal carries (docs/auth.md)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeAlias

from driftloop.errors import AuthenticationError, DriftloopError, RateLimitedError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Headers", "content_type_and_authorization", "refusal_headers"]

# Extra response headers, as (lower-case name, value) pairs: what a refusal tells the client to do next.
Headers: TypeAlias = "tuple[tuple[bytes, bytes], ...]"
_BEARER_CHALLENGE = ((b"www-authenticate", b'Bearer realm="driftloop"'),)


def refusal_headers(exc: DriftloopError) -> Headers:
    """RFC 6750's challenge on a 401; ``Retry-After`` (whole seconds) on a 429; nothing otherwise."""
    if isinstance(exc, AuthenticationError):
        return _BEARER_CHALLENGE
    if isinstance(exc, RateLimitedError):
        return ((b"retry-after", b"%d" % max(1, math.ceil(exc.retry_after_s))),)
    return ()


def content_type_and_authorization(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The first ``content-type`` and ``authorization`` of an ASGI scope's headers (names are lower
    case), as text."""
    content_type = authorization = None
    for name, value in headers:
        if name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
        elif name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
    return content_type, authorization
