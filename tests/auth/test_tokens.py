"""Tokens in the metadata database (SQLite and PostgreSQL): created once, stored hashed, listed, revoked,
expired; the service's verifier cache and its bound on revocation; token buckets."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftloop.auth import Principal, RateLimiter, TokenStore, TokenVerifier
from driftloop.errors import NotFoundError, UsageError
from driftloop.settings import RateLimit
from driftloop.storage.metadata import ApiTokenRow, open_metadata

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def store(db_url: str) -> Iterator[TokenStore]:
    db = open_metadata(db_url)
    yield TokenStore(db)
    db.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_shown_once_and_only_its_sha256_is_kept(store: TokenStore) -> None:
    info, token = store.create("ci", ["predict", "label"], created_by="bootstrap:me")
    assert token.startswith("dl_")
    assert len(token) == 46
    assert info.roles == ("predict", "label")
    assert (info.name, info.created_by, info.prefix) == ("ci", "bootstrap:me", token[:8])
    with store.db.engine.connect() as conn:
        rows = [tuple(str(v) for v in row) for row in conn.execute(sa.select(ApiTokenRow.__table__))]
    [row] = rows
    assert hashlib.sha256(token.encode()).hexdigest() in row
    assert not any(token in value for value in row)  # the token itself is nowhere in the database
    assert not any(token[8:] in value for value in row)
    # Nothing that lists tokens can give it back.
    assert token not in repr(store.tokens())
    principal = store.verify(token)
    assert principal is not None
    assert (principal.name, principal.roles, principal.token_id) == ("ci", {"predict", "label"}, info.id)
    other, second = store.create("ci", ["predict"], created_by="x")
    assert second != token
    assert other.id != info.id


def test_unknown_malformed_revoked_and_expired_tokens_are_refused(store: TokenStore) -> None:
    _, token = store.create("bot", ["predict"], created_by="x")
    assert store.verify(token) is not None
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None  # one character off
    assert store.verify("dl_short") is None
    assert store.verify("") is None
    soon = datetime.now(UTC) + timedelta(seconds=0.5)
    expiring, expiring_token = store.create("temp", ["label"], created_by="x", expires_at=soon)
    assert store.verify(expiring_token) is not None
    with store.db.session() as session:  # as if the time had come
        session.get(ApiTokenRow, expiring.id).expires_at = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[union-attr]
    assert store.verify(expiring_token) is None
    assert [t.name for t in store.tokens()] == ["bot"]
    assert [t.name for t in store.tokens(include_inactive=True)] == ["bot", "temp"]
    [revoked] = store.revoke("bot", revoked_by="admin-1")
    assert (revoked.revoked_by, revoked.active()) == ("admin-1", False)
    assert store.verify(token) is None
    with pytest.raises(NotFoundError, match="no active token left"):
        store.revoke("bot", revoked_by="admin-1")
    with pytest.raises(NotFoundError, match="no token named or with id 'nobody'"):
        store.revoke("nobody", revoked_by="admin-1")


def test_revoke_by_id_leaves_the_identitys_other_tokens_alone(store: TokenStore) -> None:
    old, old_token = store.create("ci", ["predict"], created_by="x")
    _, new_token = store.create("ci", ["predict"], created_by="x")  # rotation: a second token, same identity
    assert [t.id for t in store.revoke(old.id, revoked_by="x")] == [old.id]
    assert store.verify(old_token) is None
    assert store.verify(new_token) is not None
    assert len(store.revoke("ci", revoked_by="x")) == 1  # by name: every active token left
    assert store.verify(new_token) is None


def test_names_roles_and_expiry_are_checked(store: TokenStore) -> None:
    for name in ("", " ci", "a b", "ci\n", "x" * 201):
        with pytest.raises(UsageError, match="invalid token name"):
            store.create(name, ["predict"], created_by="x")
    with pytest.raises(UsageError, match="invalid --role root: use view, predict, label, promote, approve"):
        store.create("ci", ["predict", "root"], created_by="x")
    with pytest.raises(UsageError, match=r"invalid --role \(none\)"):
        store.create("ci", [], created_by="x")
    with pytest.raises(UsageError, match="in the past"):
        store.create("ci", ["predict"], created_by="x", expires_at=datetime.now(UTC) - timedelta(days=1))
    assert store.tokens() == []


def test_last_use_is_recorded_at_most_once_a_minute(store: TokenStore) -> None:
    info, token = store.create("ci", ["predict"], created_by="x")
    assert info.last_used_at is None
    store.verify(token)
    [first] = store.tokens()
    assert first.last_used_at is not None
    store.verify(token)
    assert store.tokens()[0].last_used_at == first.last_used_at  # no write for a verification a moment later
    with store.db.session() as session:
        session.get(ApiTokenRow, info.id).last_used_at = first.last_used_at - timedelta(minutes=2)  # type: ignore[union-attr, operator]
    store.verify(token)
    assert store.tokens()[0].last_used_at > first.last_used_at  # type: ignore[operator]


def test_admin_implies_every_role_and_every_role_implies_view(store: TokenStore) -> None:
    assert not store.has_admin()
    _, token = store.create("root", ["admin"], created_by="x")
    assert store.has_admin()
    admin = store.verify(token)
    assert admin is not None
    assert all(admin.allows(role) for role in ("view", "predict", "label", "promote", "approve", "admin"))
    label = Principal("t", "l", frozenset({"label"}))
    assert [r for r in ("view", "predict", "label", "promote", "approve", "admin") if label.allows(r)] == [
        "view",
        "label",
    ]
    view = Principal("t", "v", frozenset({"view"}))
    assert not view.allows("predict")
    store.revoke("root", revoked_by="x")
    assert not store.has_admin()


def test_the_verifier_trusts_an_answer_for_its_ttl_then_asks_again(store: TokenStore) -> None:
    """The bound on revocation: a revoked token is accepted for at most ``ttl`` after the revocation."""
    _, token = store.create("ci", ["predict"], created_by="x")
    lookups: list[str] = []

    def lookup(digest: str) -> Principal | None:
        lookups.append(digest)
        return store.lookup(digest)

    clock = Clock()
    verifier = TokenVerifier(lookup, ttl_s=5.0, clock=clock)

    async def verify(candidate: str) -> Principal | None:
        return await verifier.verify(candidate)

    assert asyncio.run(verify(token)) is not None
    assert asyncio.run(verify(token)) is not None
    assert len(lookups) == 1  # the second came from the cache
    store.revoke("ci", revoked_by="x")
    clock.now += 4.9
    assert asyncio.run(verify(token)) is not None  # within the bound: still trusted
    clock.now += 0.2
    assert asyncio.run(verify(token)) is None  # past it: asked again, refused
    assert len(lookups) == 2
    assert asyncio.run(verify("dl_not-a-token")) is None
    assert len(lookups) == 2  # a malformed token never reaches the database


def test_a_token_expiring_within_the_ttl_is_not_trusted_past_its_expiry(store: TokenStore) -> None:
    clock = Clock()
    principal = Principal("t", "ci", frozenset({"predict"}), datetime.now(UTC) + timedelta(seconds=30))
    verifier = TokenVerifier(lambda _: principal, ttl_s=300.0, clock=clock)
    token = "dl_" + "a" * 43
    assert asyncio.run(verifier.verify(token)) is principal
    clock.now += 60  # the cached answer ended with the token's expiry, 30 s in
    calls: list[str] = []
    verifier._lookup = calls.append  # type: ignore[assignment]
    assert asyncio.run(verifier.verify(token)) is None
    assert len(calls) == 1


def test_concurrent_misses_for_one_token_share_one_lookup() -> None:
    release = threading.Event()
    calls: list[str] = []
    principal = Principal("t", "ci", frozenset({"predict"}))

    def slow_lookup(digest: str) -> Principal | None:
        calls.append(digest)
        release.wait(10)
        return principal

    verifier = TokenVerifier(slow_lookup, ttl_s=5.0)
    token = "dl_" + "b" * 43

    async def many() -> list[Principal | None]:
        tasks = [asyncio.create_task(verifier.verify(token)) for _ in range(20)]
        while not calls:
            await asyncio.sleep(0.001)
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(many()) == [principal] * 20
    assert len(calls) == 1


def test_token_buckets_allow_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_second=2, burst=3), {}, clock=clock)
    assert [limiter.take("a", "predict") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", "predict") == pytest.approx(0.5)  # one token comes back in half a second
    assert limiter.take("b", "predict") == 0.0  # another key has its own bucket
    assert limiter.take("a", "label") > 0  # without a role limit, one bucket per key across routes
    clock.now += 0.5
    assert limiter.take("a", "predict") == 0.0
    assert limiter.take("a", "predict") > 0
    clock.now += 100
    assert [limiter.take("a", "predict") for _ in range(4)][-1] > 0  # refills up to the burst, no further


def test_a_roles_own_limit_replaces_the_global_one_on_its_routes() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(per_second=1, burst=1), {"label": RateLimit(per_second=10)}, clock=clock)
    assert limiter.limit("label") == (10.0, 10.0)  # burst 0: a second's worth
    assert [limiter.take("a", "label") for _ in range(10)] == [0.0] * 10
    assert limiter.take("a", "label") > 0
    assert limiter.take("a", "predict") == 0.0  # the global bucket is separate from the role's
    assert limiter.take("a", "predict") == pytest.approx(1.0)
    assert RateLimiter(None, {"label": RateLimit(per_second=1)}).take("a", "predict") == 0.0  # unlimited
