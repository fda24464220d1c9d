"""The CLI contract: --help and --version, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import driftloop
from driftloop.errors import DataError
from driftloop.storage.metadata import Database

if TYPE_CHECKING:
    from pathlib import Path


def test_version(cli) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"driftloop {driftloop.__version__}"


@pytest.mark.parametrize(
    "args", [[], ["--help"], ["simulate", "--help"], ["config", "show", "--help"], ["db", "--help"]]
)
def test_help_everywhere(cli, args: list[str]) -> None:
    result = cli(*args)
    assert result.code in (0, 2)  # no arguments prints help with click's "missing command" status
    assert "Usage" in result.out + result.err


def test_only_working_verbs_are_listed(cli) -> None:
    out = cli("--help").out
    for verb in (
        "simulate",
        "config",
        "db",
        "pipeline",
        "features",
        "train",
        "models",
        "promote",
        "rollback",
        "serve",
        "monitor",
        "scheduler",
        " up ",
        "demo",
        "loop",
    ):
        assert verb in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["simulate", "--nope"], "No such option"),
        (["simulate", "--days", "-3"], "--days"),
        (["no-such-verb"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, args: list[str], fragment: str) -> None:
    result = cli(*args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]


def test_config_error_is_one_line_exit_1(cli, tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("[simulate]\nmachines = -1\n")
    result = cli("config", "show")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        f"error: invalid configuration in {tmp_path / 'driftloop.toml'}: simulate.machines "
        "(DRIFTLOOP_SIMULATE__MACHINES): input should be greater than or equal to 1"
    ]


def test_error_lines_never_carry_control_characters(cli) -> None:
    # Backspace and bell reach a terminal as they are (click strips only colour sequences, and only
    # when not on a terminal); the file name is shown escaped instead.
    result = cli("--config", "no\bsuch\afile\x1b[2J.toml", "config", "show")
    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert line.isprintable()
    assert "configuration file not found: " in line
    assert "no\\x08such\\x07file\\x1b[2J.toml" in line


def test_headlines_are_one_printable_line() -> None:
    error = DataError("line 3: 'a\x00b\x1b[31m'\n\tnext \u202egnp.exe \udce9")
    assert error.headline == "line 3: 'a\\x00b\\x1b[31m' next \\u202egnp.exe \\udce9"
    assert error.headline.isprintable()
    assert str(error) == error.headline


def test_debug_adds_the_traceback(cli, tmp_path: Path) -> None:
    (tmp_path / "driftloop.toml").write_text("[simulate]\nmachines = -1\n")
    result = cli("--debug", "config", "show")
    assert result.code == 1
    assert "Traceback" in result.err
    assert result.err.strip().splitlines()[-1].startswith("error: invalid configuration")


def test_config_show_masks_secrets(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_STORAGE__S3__SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("DRIFTLOOP_DATABASE__URL", "postgresql+psycopg://u:pw@h/db")
    result = cli("config", "show")
    assert result.code == 0
    assert "s3cr3t" not in result.out
    assert ":pw@" not in result.out
    assert 'url = "postgresql+psycopg://u:***@h/db"' in result.out
    assert "[storage.s3]" in result.out
    assert f'root = "{tmp_path / ".driftloop"}"' in result.out


def test_config_show_json(cli) -> None:
    import json

    data = json.loads(cli("config", "show", "--json").out)
    assert data["simulate"]["machines"] == 20
    assert data["storage"]["s3"]["secret_access_key"] is None


def test_explicit_missing_config_file(cli) -> None:
    result = cli("--config", "nowhere.toml", "config", "show")
    assert result.code == 1
    assert "configuration file not found" in result.err


def test_db_upgrade_is_idempotent_and_status_reports_head(cli) -> None:
    first = cli("db", "upgrade")
    assert first.code == 0
    assert "upgraded empty" in first.out
    second = cli("db", "upgrade")
    assert "already at revision" in second.out
    status = cli("db", "status")
    assert "pending" not in status.out
    assert f"revision: {Database.head_revision()}" in status.out


def test_unreachable_database_is_one_line(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_DATABASE__URL", "postgresql+psycopg://x@127.0.0.1:1/none?connect_timeout=1")
    result = cli("db", "status")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert result.err.startswith("error: metadata database")


def test_console_script_runs_as_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "driftloop", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("driftloop ")
    bad = subprocess.run(
        [sys.executable, "-m", "driftloop", "simulate", "--start", "2026-13-40", "--days", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: invalid --start '2026-13-40': expected a date like 2026-01-31"
    ]


@pytest.mark.parametrize(("verb", "hint"), [("serve", "[serving.host]"), ("promote", "[current user]")])
def test_help_shows_where_a_default_comes_from(cli, verb: str, hint: str) -> None:
    # Rich reads "[serving.host]" as markup and drops it unless escaped.
    assert hint in cli(verb, "--help").out
