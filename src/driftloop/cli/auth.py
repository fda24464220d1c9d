"""``driftloop auth``: API tokens and their roles (docs/auth.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from driftloop.cli._output import json_option, plain, print_json
from driftloop.cli._state import state
from driftloop.errors import UsageError

if TYPE_CHECKING:
    from driftloop.auth import TokenInfo, TokenStore

app = typer.Typer(
    help="API tokens and roles: create (the token is shown once), list, revoke, whoami.",
    no_args_is_help=True,
)


def _store(ctx: typer.Context) -> TokenStore:
    """The tokens table, its database closed with the command."""
    from driftloop.auth import TokenStore
    from driftloop.storage.metadata import open_metadata

    st = state(ctx)
    db = open_metadata(st.settings.database_url, echo=st.settings.database.echo)
    ctx.call_on_close(db.dispose)
    return TokenStore(db)


def _expiry(text: str) -> datetime:
    """``--expires``: a duration from now (``90d``) or a UTC date or time (``2027-01-31``)."""
    from driftloop.core.durations import parse_duration

    if text[:1].isdigit() and text[-1:].lower() in "smhdw":
        return datetime.now(UTC) + parse_duration(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid --expires {text!r}: a duration (90d, 12h) or a UTC date or time (2027-01-31)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The identity the token acts as (recorded in audit rows)."),
    role: list[str] = typer.Option(
        ..., "--role", help="view, predict, label, promote, approve or admin (repeat for several)."
    ),
    expires: str | None = typer.Option(
        None, "--expires", help="A duration (90d) or a UTC date (2027-01-31); default: never."
    ),
) -> None:
    """Create a token and print it once (stdout: the token alone; nothing keeps it but its hash).

    Needs an admin token in DRIFTLOOP_TOKEN once an active admin token exists; before that, whoever can
    write the metadata database creates the first one (the bootstrap).
    """
    from driftloop.auth import token_manager

    st = state(ctx)
    store = _store(ctx)
    creator = token_manager(st.settings, store)
    info, token = store.create(
        name, role, created_by=creator, expires_at=_expiry(expires) if expires else None
    )
    until = f"expires {_when(info.expires_at)} UTC" if info.expires_at else "no expiry"
    bootstrap = " (bootstrap: no admin token existed)" if creator.startswith("bootstrap:") else ""
    st.err.print(
        f"created token {info.id} for {info.name} (roles {', '.join(info.roles)}; {until}){bootstrap}; "
        "it is shown once, below: store it now"
    )
    typer.echo(token)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="Include revoked and expired tokens."),
    as_json: bool = json_option(),
) -> None:
    """List tokens: id, identity, roles, first characters, created, expiry, last use (never the token)."""
    from driftloop.auth import token_manager

    st = state(ctx)
    store = _store(ctx)
    token_manager(st.settings, store)
    tokens = store.tokens(include_inactive=show_all)
    if as_json:  # TokenInfo holds no secret: the prefix is what `auth list` shows anyway
        print_json([{**plain(t), "state": _state(t)} for t in tokens])
        return
    if not tokens:
        st.out.print("no tokens" + ("" if show_all else " (active ones; --all shows revoked and expired)"))
        return
    # One line per token (soft-wrapped, never folded): greppable, and readable at any width.
    st.out.print(f"{len(tokens)} token(s), oldest first (times UTC)")
    for t in tokens:
        created = f"created {_when(t.created_at)} by {t.created_by}"
        st.out.print(
            f"{t.id}  {t.name:<16} {', '.join(t.roles):<22} {t.prefix}…  {created}  "
            f"expires {_when(t.expires_at)}  last used {_when(t.last_used_at)}  {_state(t)}"
        )


def _state(token: TokenInfo) -> str:
    if token.revoked_at is not None:
        return f"revoked {_when(token.revoked_at)} by {token.revoked_by}"
    return "active" if token.active() else "expired"


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name_or_id: str = typer.Argument(
        ..., metavar="NAME|ID", help="A token id, or an identity (revokes all its tokens)."
    ),
) -> None:
    """Revoke a token by id, or every token of an identity. The service refuses it within auth.cache_s."""
    from driftloop.auth import token_manager

    st = state(ctx)
    store = _store(ctx)
    revoker = token_manager(st.settings, store)
    for t in store.revoke(name_or_id, revoked_by=revoker):
        st.out.print(f"revoked token {t.id} of {t.name} (roles {', '.join(t.roles)})")
    if not store.has_admin():
        st.err.print(
            "[yellow]no active admin token is left: until one is created, whoever can write the metadata "
            "database manages tokens[/]"
        )


@app.command("whoami")
def whoami(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Verify the token in DRIFTLOOP_TOKEN (or auth.token) and print its identity and roles."""
    from driftloop.auth import token_principal

    st = state(ctx)
    store = _store(ctx)
    principal = token_principal(st.settings, store.db, needed="whoami")
    info = next(t for t in store.tokens() if t.id == principal.token_id)
    if as_json:
        print_json(
            {"name": principal.name, "token_id": info.id, "roles": info.roles, "expires_at": info.expires_at}
        )
        return
    until = f"expires {_when(info.expires_at)} UTC" if info.expires_at else "no expiry"
    st.out.print(f"{principal.name} (token {info.id}, roles {', '.join(info.roles)}; {until})")
