"""What the prediction service checks before a protected route runs: the bearer token, its role, the rate.

Cheap on the hot path (decision 0035): a token verified in the last ``auth.cache_s`` seconds is found in
a dict by its SHA-256 (no database); a miss is looked up once off the event loop, concurrent misses for
the same token sharing that lookup. A revoked token therefore stays accepted for at most ``cache_s``
seconds by each service process. Rate limits are token buckets in a dict, keyed by token (by client
address with auth off) and, where a role has its own limit, by that role.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from driftloop.auth.tokens import Principal, TokenStore, token_digest, well_formed
from driftloop.errors import AuthenticationError, PermissionDeniedError, RateLimitedError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from driftloop.settings import AuthRole, RateLimit, Settings

__all__ = ["Gate", "RateLimiter", "TokenVerifier", "gate_for"]

log = logging.getLogger(__name__)

_BEARER = "bearer "
_MAX_CACHED = 10_000  # verified (or refused) tokens remembered; beyond it the expired ones are dropped
_MAX_BUCKETS = 100_000  # rate-limit buckets; beyond it the full (idle) ones are dropped


class TokenVerifier:
    """Tokens verified by ``lookup`` (a SHA-256 → principal, e.g. :meth:`TokenStore.lookup`), each answer
    trusted for ``ttl_s`` seconds of ``clock`` (and never past the token's own expiry)."""

    def __init__(
        self,
        lookup: Callable[[str], Principal | None],
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}

    async def verify(self, token: str) -> Principal | None:
        """The principal of ``token`` when it is active, else None. Raises what ``lookup`` raises (e.g.
        :class:`~driftloop.errors.MetadataError` with the database down: the service answers 503)."""
        if not well_formed(token):
            return None
        digest = token_digest(token)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._lookup, digest))
            self._pending[digest] = pending
            pending.add_done_callback(lambda done: self._remember(digest, done))
        # Shielded: a client that disconnects must not cancel the lookup others wait on.
        return await asyncio.shield(pending)

    def _remember(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        self._pending.pop(digest, None)
        if done.cancelled() or done.exception() is not None:
            return
        principal = done.result()
        now = self._clock()
        until = now + self._ttl_s
        if principal is not None and principal.expires_at is not None:
            until = min(until, now + (principal.expires_at - datetime.now(UTC)).total_seconds())
        if len(self._cache) >= _MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= _MAX_CACHED:  # all fresh: a flood of distinct tokens; start over
                self._cache.clear()
        self._cache[digest] = (principal, until)


class RateLimiter:
    """Token buckets: ``take(key, role)`` admits a request (0.0) or says how many seconds until one
    would be admitted. ``per_role`` limits replace ``default`` on the routes needing that role."""

    def __init__(
        self,
        default: RateLimit | None,
        per_role: Mapping[AuthRole, RateLimit],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits: dict[str, tuple[float, float]] = {
            role: _rate(limit) for role, limit in per_role.items()
        }
        self._default = _rate(default) if default is not None else None
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # → (tokens left, when)

    def limit(self, role: str) -> tuple[float, float] | None:
        """(per second, burst) for requests needing ``role``; None: unlimited."""
        return self._limits.get(role, self._default)

    def take(self, key: str, role: str) -> float:
        limit = self._limits.get(role)
        group = role if limit is not None else "*"  # one bucket per token unless the role has its own
        limit = limit or self._default
        if limit is None:
            return 0.0
        rate, burst = limit
        now = self._clock()
        left, then = self._buckets.get((key, group), (burst, now))
        left = min(burst, left + (now - then) * rate)
        if len(self._buckets) >= _MAX_BUCKETS:
            self._prune(now)
        if left >= 1.0:
            self._buckets[key, group] = (left - 1.0, now)
            return 0.0
        self._buckets[key, group] = (left, now)
        return (1.0 - left) / rate

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        kept = {}
        for (key, group), (left, then) in self._buckets.items():
            rate, burst = self._limits.get(group) or self._default or (1.0, 1.0)
            if left + (now - then) * rate < burst:
                kept[key, group] = (left, then)
        self._buckets = kept


def _rate(limit: RateLimit) -> tuple[float, float]:
    return limit.per_second, float(limit.burst or max(1, math.ceil(limit.per_second)))


class Gate:
    """Admits a request to a route needing ``role``: checks the bearer token when ``verifier`` is set
    (auth on), then the rate limit when ``limiter`` is set. Raises the error to answer with."""

    def __init__(self, verifier: TokenVerifier | None, limiter: RateLimiter | None) -> None:
        self.verifier = verifier
        self.limiter = limiter

    @property
    def auth(self) -> bool:
        """Whether tokens are required (auth on)."""
        return self.verifier is not None

    async def admit(self, role: str, authorization: str | None, client: str | None) -> Principal | None:
        """The principal the request acts as (None with auth off). Raises
        :class:`AuthenticationError` (401), :class:`PermissionDeniedError` (403) or
        :class:`RateLimitedError` (429)."""
        principal = None
        key = client or "-"
        if self.verifier is not None:
            principal = await self._principal(authorization)
            if not principal.allows(role):
                have = ", ".join(sorted(principal.roles))
                raise PermissionDeniedError(
                    f"the token of {principal.name!r} lacks the {role} role this route needs (it has: {have})"
                )
            key = principal.token_id
        if self.limiter is not None:
            wait = self.limiter.take(key, role)
            if wait > 0:
                rate, burst = self.limiter.limit(role) or (0.0, 0.0)
                who = repr(principal.name) if principal is not None else f"client {key}"
                raise RateLimitedError(
                    f"rate limit for {who} exceeded ({rate:g} requests/s, bursts of {burst:g}): "
                    f"retry in {math.ceil(wait)} s",
                    wait,
                )
        return principal

    async def _principal(self, authorization: str | None) -> Principal:
        assert self.verifier is not None
        if not authorization:
            raise AuthenticationError(
                'missing credentials: this service has auth on; send "Authorization: Bearer <token>"'
            )
        if authorization[: len(_BEARER)].lower() != _BEARER:
            raise AuthenticationError('the Authorization header must be "Bearer <token>"')
        principal = await self.verifier.verify(authorization[len(_BEARER) :].strip())
        if principal is None:
            raise AuthenticationError("invalid token: unknown, revoked or expired")
        return principal


def gate_for(settings: Settings) -> Gate | None:
    """The service's gate for ``settings``; None when auth is off and nothing is rate-limited (then
    nothing is checked and nothing costs anything). With auth on, opens the metadata database."""
    from driftloop.storage.metadata import open_metadata

    cfg = settings.auth
    limiter = (
        RateLimiter(cfg.rate_limit, cfg.role_rate_limits) if cfg.rate_limit or cfg.role_rate_limits else None
    )
    verifier = None
    if cfg.enabled:
        store = TokenStore(open_metadata(settings.database_url, echo=settings.database.echo))
        if not store.tokens():
            log.warning(
                "auth is on and no active token exists: every protected request will be refused "
                "(create one: driftloop auth create NAME --role predict)"
            )
        verifier = TokenVerifier(store.lookup, cfg.cache_s)
    if verifier is None and limiter is None:
        return None
    return Gate(verifier, limiter)
