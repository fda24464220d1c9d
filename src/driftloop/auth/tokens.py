"""API tokens in the metadata database: created (shown once), listed, revoked, verified.

A token is ``dl_`` followed by 43 URL-safe characters: 32 bytes (256 bits) from :mod:`secrets`. Only its
SHA-256 is stored. A fast hash is enough here because the secret is random and long: a slow, salted
hash (bcrypt, scrypt, PBKDF2) defends *guessable* passwords against a stolen table, and no amount of
hashing speed makes 2^256 guesses feasible. A plain digest also lets the service find a presented token
with one indexed lookup (decision 0035).

Roles (docs/auth.md): ``view`` (read the service's internals), ``predict``, ``label``, ``promote``,
``approve`` and ``admin``. ``admin`` implies every role; every role implies ``view``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, get_args

import sqlalchemy as sa

from driftloop.errors import NotFoundError, UsageError
from driftloop.settings import AuthRole
from driftloop.storage.metadata import ApiTokenRow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from driftloop.storage.metadata import Database

__all__ = [
    "ROLES",
    "TOKEN_PREFIX",
    "Principal",
    "TokenInfo",
    "TokenStore",
    "new_token",
    "token_digest",
    "well_formed",
]

ROLES: tuple[AuthRole, ...] = get_args(AuthRole)
TOKEN_PREFIX = "dl_"
_TOKEN = re.compile(r"dl_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}")
_SHOWN = 8  # characters of a token kept in clear to recognise it in `auth list` (dl_ + 5 of its 43)
# last_used_at is refreshed when a verification finds it older than this: at most one write a minute
# per token, so "last used" costs nothing on the request path.
_LAST_USED_GRAIN = timedelta(minutes=1)


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def well_formed(token: str) -> bool:
    """Whether ``token`` has the shape of a driftloop token (checked before any lookup)."""
    return _TOKEN.fullmatch(token) is not None


def token_digest(token: str) -> str:
    """What the database keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for: the token's id, its identity (``name``) and its roles."""

    token_id: str
    name: str
    roles: frozenset[str]
    expires_at: datetime | None = None

    def allows(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles or (role == "view" and bool(self.roles))


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``auth list`` shows it: everything but the secret."""

    id: str
    name: str
    prefix: str
    roles: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    def active(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class TokenStore:
    """The ``api_tokens`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, name: str, roles: Iterable[str], *, created_by: str, expires_at: datetime | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token for identity ``name``: its row and the token itself, which nothing keeps."""
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"invalid token name {name!r}: letters, digits and _ . @ + - (starting with a letter or "
                "digit), at most 200"
            )
        given = set(roles)
        unknown = sorted(given - set(ROLES))
        if unknown or not given:
            raise UsageError(f"invalid --role {', '.join(unknown) or '(none)'}: use {', '.join(ROLES)}")
        wanted = [r for r in ROLES if r in given]
        now = datetime.now(UTC)
        if expires_at is not None and expires_at <= now:
            raise UsageError(f"the expiry {expires_at:%Y-%m-%d %H:%M} UTC is in the past")
        token = new_token()
        row = ApiTokenRow(
            id=secrets.token_hex(6),
            name=name,
            token_hash=token_digest(token),
            prefix=token[:_SHOWN],
            roles=wanted,
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
        )
        with self.db.session() as session:
            session.add(row)
        return _info(row), token

    def tokens(self, *, include_inactive: bool = False) -> list[TokenInfo]:
        """Tokens, oldest first; only the active ones unless ``include_inactive``."""
        with self.db.session() as session:
            rows = session.scalars(sa.select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.id))
            tokens = [_info(r) for r in rows]
        return tokens if include_inactive else [t for t in tokens if t.active()]

    def revoke(self, name_or_id: str, *, revoked_by: str) -> list[TokenInfo]:
        """Revoke the token with this id, else every active token of this identity; returns them."""
        now = datetime.now(UTC)
        with self.db.session() as session:
            by_id = session.get(ApiTokenRow, name_or_id)
            by_name = sa.select(ApiTokenRow).where(ApiTokenRow.name == name_or_id)
            rows = [by_id] if by_id is not None else list(session.scalars(by_name))
            if not rows:
                raise NotFoundError(f"no token named or with id {name_or_id!r} (see: driftloop auth list)")
            active = [r for r in rows if _info(r).active(now)]
            if not active:
                raise NotFoundError(f"{name_or_id!r}: no active token left to revoke (revoked or expired)")
            for r in active:
                r.revoked_at, r.revoked_by = now, revoked_by
            session.flush()
            return [_info(r) for r in active]

    def lookup(self, digest: str) -> Principal | None:
        """The principal of the active token whose SHA-256 is ``digest``, or None. Refreshes its
        ``last_used_at`` when older than a minute (one small write, not one per request)."""
        now = datetime.now(UTC)
        with self.db.session() as session:
            row = session.scalars(sa.select(ApiTokenRow).where(ApiTokenRow.token_hash == digest)).first()
            if row is None or not _info(row).active(now):
                return None
            if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_GRAIN:
                row.last_used_at = now
            return Principal(row.id, row.name, frozenset(row.roles), row.expires_at)

    def verify(self, token: str) -> Principal | None:
        """The principal of ``token`` if it is active, else None (no cache: the CLI's check)."""
        return self.lookup(token_digest(token)) if well_formed(token) else None

    def has_admin(self) -> bool:
        """Whether an active token with the admin role exists (else token management is open to
        whoever can write this database: the bootstrap, docs/auth.md)."""
        return any("admin" in t.roles for t in self.tokens())


def _info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        roles=tuple(row.roles),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )
