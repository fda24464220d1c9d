"""``driftloop auth``: the bootstrap, then admin-only token management; the token printed once and alone;
one-line errors; ``config show`` masks every secret."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from driftloop.auth import TokenStore
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import Result


ROLE_LIST = "view, predict, label, promote, approve, admin"
NAME_RULE = "letters, digits and _ . @ + - (starting with a letter or digit), at most 200"
NEEDS_TOKEN = (
    "set DRIFTLOOP_TOKEN (or auth.token) to a token with that role (driftloop auth create NAME --role …)"
)


def _token(result: Result) -> str:
    assert result.code == 0, result.err
    [token] = result.out.split()  # stdout holds the token alone: TOKEN=$(driftloop auth create …)
    assert token.startswith("dl_")
    return token


def test_the_first_admin_is_bootstrapped_then_only_admins_manage_tokens(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before any admin token exists, whoever can write the metadata database creates one.
    first = cli("auth", "create", "ops", "--role", "admin")
    root = _token(first)
    assert re.fullmatch(
        r"created token [0-9a-f]{12} for ops \(roles admin; no expiry\) \(bootstrap: no admin token "
        r"existed\); it is shown once, below: store it now\n",
        first.err,
    )
    # From now on a token is needed, and it must be an admin's.
    refused = cli("auth", "create", "ci", "--role", "predict")
    assert (refused.code, refused.out) == (1, "")
    assert refused.err.splitlines() == [
        f"error: managing tokens (an admin token exists) needs a token: {NEEDS_TOKEN}"
    ]
    monkeypatch.setenv("DRIFTLOOP_TOKEN", "dl_" + "x" * 43)
    assert cli("auth", "list").err.splitlines() == [
        "error: the token in DRIFTLOOP_TOKEN (or auth.token) is invalid: unknown, revoked or expired"
    ]
    monkeypatch.setenv("DRIFTLOOP_TOKEN", root)
    scorer = _token(cli("auth", "create", "ci", "--role", "predict", "--role", "label", "--expires", "30d"))
    monkeypatch.setenv("DRIFTLOOP_TOKEN", scorer)
    denied = cli("auth", "revoke", "ops")
    assert (denied.code, denied.err.splitlines()) == (
        1,
        ["error: the token of 'ci' lacks the admin role managing tokens needs"],
    )
    whoami = cli("auth", "whoami")
    assert re.fullmatch(r"ci \(token [0-9a-f]{12}, roles predict, label; expires \S+ \S+ UTC\)\n", whoami.out)

    monkeypatch.setenv("DRIFTLOOP_TOKEN", root)
    listed = cli("auth", "list")
    assert listed.code == 0
    assert root not in listed.out
    assert scorer not in listed.out
    assert "predict, label" in listed.out
    assert f"{scorer[:8]}…" in listed.out  # recognisable by its first characters only
    assert "bootstrap:" in listed.out
    revoked = cli("auth", "revoke", "ci")
    assert re.fullmatch(r"revoked token [0-9a-f]{12} of ci \(roles predict, label\)\n", revoked.out)
    assert [line.split()[1] for line in cli("auth", "list").out.splitlines()[1:]] == ["ops"]
    every = cli("auth", "list", "--all").out.splitlines()
    assert every[0] == "2 token(s), oldest first (times UTC)"
    assert re.search(r" ci .* revoked \S+ \S+ by ops$", every[2])
    store = TokenStore(open_metadata(load_settings().database_url))
    assert store.verify(scorer) is None
    assert store.verify(root) is not None


def test_revoking_the_last_admin_reopens_the_bootstrap_and_says_so(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _token(cli("auth", "create", "ops", "--role", "admin"))
    monkeypatch.setenv("DRIFTLOOP_TOKEN", root)
    result = cli("auth", "revoke", "ops")
    assert result.code == 0
    assert "no active admin token is left" in result.err
    monkeypatch.delenv("DRIFTLOOP_TOKEN")
    assert _token(cli("auth", "create", "ops2", "--role", "admin"))


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["create", "ci", "--role", "root"], 2, f"error: invalid --role root: use {ROLE_LIST}"),
        (["create", "a b", "--role", "view"], 2, f"error: invalid token name 'a b': {NAME_RULE}"),
        (
            ["create", "ci", "--role", "view", "--expires", "soon"],
            2,
            "error: invalid --expires 'soon': a duration (90d, 12h) or a UTC date or time (2027-01-31)",
        ),
        (
            ["create", "ci", "--role", "view", "--expires", "2001-01-01"],
            2,
            "error: the expiry 2001-01-01 00:00 UTC is in the past",
        ),
        (["revoke", "nobody"], 1, "error: no token named or with id 'nobody' (see: driftloop auth list)"),
        (["whoami"], 1, f"error: whoami needs a token: {NEEDS_TOKEN}"),
    ],
)
def test_mistakes_are_one_line(cli: Callable[..., Result], args: list[str], code: int, line: str) -> None:
    result = cli("auth", *args)
    assert (result.code, result.err.splitlines(), result.out) == (code, [line], "")


def test_an_expiry_date_is_kept_in_utc(cli: Callable[..., Result]) -> None:
    _token(cli("auth", "create", "ci", "--role", "view", "--expires", "2099-06-30"))
    [info] = TokenStore(open_metadata(load_settings().database_url)).tokens()
    assert info.expires_at is not None
    assert info.expires_at.isoformat() == "2099-06-30T00:00:00+00:00"


@pytest.mark.parametrize("verb", ["create", "list", "revoke", "whoami"])
def test_every_auth_verb_has_help(cli: Callable[..., Result], verb: str) -> None:
    result = cli("auth", verb, "--help")
    assert result.code == 0
    assert "Usage" in result.out
    assert "auth" in cli("--help").out


def test_config_show_masks_the_token_and_the_mlflow_password(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_TOKEN", "dl_" + "s" * 43)
    monkeypatch.setenv("DRIFTLOOP_TRACKING__PASSWORD", "hunter2-hunter2")
    monkeypatch.setenv("DRIFTLOOP_AUTH__ROLE_RATE_LIMITS__PREDICT__PER_SECOND", "50")
    result = cli("config", "show", "--json")
    assert result.code == 0
    assert "sss" not in result.out
    assert "hunter2" not in result.out
    shown = json.loads(result.out)
    assert shown["auth"]["token"] == "**********"
    assert shown["tracking"]["password"] == "**********"
    assert shown["auth"]["role_rate_limits"] == {"predict": {"per_second": 50.0, "burst": 0}}


def test_the_long_token_variable_wins_over_the_short_one(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "driftloop.toml").write_text('[auth]\nenabled = true\ntoken = "from-file"\n')
    assert load_settings().auth.token.get_secret_value() == "from-file"  # type: ignore[union-attr]
    monkeypatch.setenv("DRIFTLOOP_TOKEN", "from-short")
    assert load_settings().auth.token.get_secret_value() == "from-short"  # type: ignore[union-attr]
    monkeypatch.setenv("DRIFTLOOP_AUTH__TOKEN", "from-long")
    assert load_settings().auth.token.get_secret_value() == "from-long"  # type: ignore[union-attr]
    assert load_settings().auth.enabled
