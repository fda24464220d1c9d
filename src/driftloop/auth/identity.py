"""Who a CLI or SDK action is recorded as (the ``actor`` of audit rows).

With auth on, the identity of the token in ``auth.token`` (``DRIFTLOOP_TOKEN``), verified against the
metadata database (no cache: one lookup per command) and holding the role the action needs; a free-text
``--by`` may only repeat it. With auth off, ``--by`` or the operating-system user, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop.auth.tokens import Principal, TokenStore
from driftloop.errors import AuthenticationError, PermissionDeniedError, UsageError
from driftloop.runtime.users import os_user
from driftloop.settings import TOKEN_ENV
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from typing import Literal

    from driftloop.settings import Settings
    from driftloop.storage.metadata import Database
    from driftloop.tracking.runs import RunOrigin

__all__ = ["acting_identity", "os_user", "run_origin", "run_user", "token_manager", "token_principal"]


def token_principal(settings: Settings, db: Database, *, needed: str) -> Principal:
    """The principal of the configured token; :class:`AuthenticationError` without one, or for one that
    is unknown, revoked or expired. ``needed`` says what for, in the message."""
    secret = settings.auth.token
    if secret is None or not secret.get_secret_value():
        raise AuthenticationError(
            f"{needed} needs a token: set {TOKEN_ENV} (or auth.token) to a token with that role "
            "(driftloop auth create NAME --role …)"
        )
    principal = TokenStore(db).verify(secret.get_secret_value().strip())
    if principal is None:
        raise AuthenticationError(
            f"the token in {TOKEN_ENV} (or auth.token) is invalid: unknown, revoked or expired"
        )
    return principal


def acting_identity(settings: Settings, db: Database, role: str, *, by: str | None = None) -> str:
    """The identity to record for an action needing ``role``.

    Auth on: the token's identity (:class:`PermissionDeniedError` when it lacks ``role``; a ``by`` that
    differs is a :class:`UsageError`). Auth off: ``by``, else the operating-system user.
    """
    if not settings.auth.enabled:
        return by or os_user()
    principal = token_principal(settings, db, needed=f"with auth on, this command (role {role})")
    if not principal.allows(role):
        have = ", ".join(sorted(principal.roles))
        raise PermissionDeniedError(f"the token of {principal.name!r} lacks the {role} role (it has: {have})")
    if by is not None and by != principal.name:
        raise UsageError(
            f"--by {by!r} differs from the token's identity {principal.name!r}: with auth on the actor is "
            "the token's identity (drop --by)"
        )
    return principal.name


def token_manager(settings: Settings, store: TokenStore) -> str:
    """Who creates or revokes tokens (recorded on the token). Once an active admin token exists, only
    an admin token may; before, whoever can write the metadata database bootstraps (docs/auth.md)."""
    if not store.has_admin():
        return f"bootstrap:{os_user()}"
    principal = token_principal(settings, store.db, needed="managing tokens (an admin token exists)")
    if not principal.allows("admin"):
        raise PermissionDeniedError(
            f"the token of {principal.name!r} lacks the admin role managing tokens needs"
        )
    return principal.name


def run_user(settings: Settings) -> str:
    """Who MLflow runs started by this command name as their user: with auth on and a token set, the
    token's identity (verified: :class:`AuthenticationError` when it is invalid, before any work);
    otherwise the operating-system user. No role is needed: tracking a run is not a guarded action,
    the user only says who did it (decision 0064)."""
    secret = settings.auth.token
    if not settings.auth.enabled or secret is None or not secret.get_secret_value():
        return os_user()
    db = open_metadata(settings.database_url, echo=settings.database.echo)
    try:
        return token_principal(settings, db, needed="naming the user of MLflow runs").name
    finally:
        db.dispose()


def run_origin(settings: Settings, source: str, source_type: Literal["LOCAL", "JOB"] = "LOCAL") -> RunOrigin:
    """The origin of the MLflow runs a command starts: ``source`` (the command), ``source_type`` and
    :func:`run_user` as their user."""
    from driftloop.tracking.runs import RunOrigin  # tracking imports MLflow: only when runs are made

    return RunOrigin(source, source_type, run_user(settings))
