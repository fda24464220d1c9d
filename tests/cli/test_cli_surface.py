"""The CLI's surface (issue 23): fast start, --json on every read command, flags without a value type,
shell completion, and a configuration that round-trips through `config show --toml`."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from driftloop.cli.main import build_command
from driftloop.settings import load_settings, masked_dump

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from typer._click.core import Command

# What a read command must not need to start: each costs seconds to import on a loaded machine.
HEAVY = ("torch", "mlflow", "pandas", "pyarrow", "sklearn", "scipy", "sqlalchemy", "dvc", "fastapi", "numpy")

# Every command that only reads: each takes --json and prints one JSON document on stdout.
READ_COMMANDS = (
    ("config", "show"),
    ("models", "list"),
    ("models", "show"),
    ("models", "history"),
    ("lineage",),
    ("pipeline", "list"),
    ("pipeline", "show"),
    ("features", "list"),
    ("features", "show"),
    ("schedule", "list"),
    ("loop", "history"),
    ("monitor", "history"),
    ("auth", "list"),
    ("auth", "whoami"),
    ("db", "status"),
)


def _commands(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def _heavy_after(code: str) -> list[str]:
    """The heavy libraries a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy_after_main(argv: list[str]) -> list[str]:
    """The heavy libraries ``driftloop ARGV…`` has imported by its end, in a fresh interpreter."""
    return _heavy_after(
        f"from driftloop.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    )


def test_the_cli_imports_no_heavy_library_to_start() -> None:
    assert _heavy_after("import driftloop.cli.main") == []


@pytest.mark.parametrize("argv", [["--help"], ["models", "list", "--help"], ["pipeline", "run", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    assert _heavy_after_main(argv) == []


def test_reads_on_a_fresh_home_import_little_and_create_nothing(tmp_path: Path) -> None:
    # No MLflow store yet: no version exists, so MLflow is neither imported nor asked to create one.
    for argv in (["models", "list", "--json"], ["models", "list"]):
        assert _heavy_after_main(argv) == []
    assert not (tmp_path / ".driftloop" / "mlflow.db").exists()
    # Run records need SQLAlchemy, not pandas or pyarrow (ArtifactRef lives apart from the catalog).
    assert set(_heavy_after_main(["pipeline", "list", "--json"])) <= {"sqlalchemy"}


def test_models_show_on_a_fresh_home_is_one_line(cli) -> None:
    result = cli("models", "show", "plant-failure/1")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "error: no registered model 'plant-failure' (nothing is registered yet)"
    ]


def test_every_read_command_takes_json() -> None:
    tree = dict(_commands(build_command()))
    # A read verb added to any noun later is held to the same rule without editing this test.
    read_verbs = {
        path for path in tree if path and path[-1] in {"list", "show", "history", "status", "whoami"}
    }
    assert set(READ_COMMANDS) >= read_verbs - {("completion", "show")}  # a script, not a record
    for path in READ_COMMANDS:
        options = {opt for p in tree[path].params for opt in getattr(p, "opts", [])}
        assert "--json" in options, path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pipeline", "list", "--json"], []),
        (["features", "list", "--json"], []),
        (["monitor", "history", "--json"], []),
        (["auth", "list", "--json"], []),
        (["loop", "history", "--json"], {"model": "plant-failure", "triggers": [], "guards": []}),
    ],
)
def test_read_commands_print_only_json_on_stdout(cli, argv: list[str], expected: object) -> None:
    result = cli(*argv)
    assert result.code == 0, result.err
    assert json.loads(result.out) == expected


def test_db_status_json(cli) -> None:
    assert cli("db", "upgrade").code == 0
    data = json.loads(cli("db", "status", "--json").out)
    assert data["pending"] is False
    assert data["revision"] == data["head"]
    assert data["url"].startswith("sqlite:///")


def test_schedule_list_json(cli) -> None:
    jobs = json.loads(cli("schedule", "list", "--json").out)
    assert jobs, "the default configuration has schedules"
    assert {"id", "configured", "next_run_time", "last_fire"} <= set(jobs[0])
    assert all(job["configured"] and job["last_fire"] is None for job in jobs)


def test_no_flag_shows_a_value_type_in_help(cli) -> None:
    flags = 0
    for path, command in _commands(build_command()):
        if any(getattr(p, "is_flag", False) for p in command.params):
            flags += 1
            result = cli(*path, "--help")
            assert result.code == 0, (path, result.err)
            assert "<bool>" not in result.out, path
    assert flags > 10  # the walk saw the tree, not just the root


def test_completion_scripts_are_produced(cli) -> None:
    for shell, marker in (("bash", "complete_bash"), ("zsh", "complete_zsh"), ("fish", "complete_fish")):
        result = cli("completion", "show", shell)
        assert result.code == 0, result.err
        assert "_DRIFTLOOP_COMPLETE" in result.out
        assert marker in result.out


def test_completion_of_an_unknown_shell_is_one_line(cli) -> None:
    result = cli("completion", "show", "tcsh")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: no completion for shell 'tcsh': choose bash, zsh, fish"
    ]


def test_completion_install_writes_the_script(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result = cli("completion", "install", "bash")
    assert result.code == 0, result.err
    script = tmp_path / ".bash_completions" / "driftloop.sh"
    assert "_DRIFTLOOP_COMPLETE" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


def test_the_completion_script_gets_answers(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_DRIFTLOOP_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "driftloop mod")
    monkeypatch.setenv("COMP_CWORD", "1")
    result = cli()
    assert result.code == 0, result.err
    assert result.out.split() == ["models"]


def test_config_show_toml_loads_back(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Values of every kind: nested tables, an emptied table, lists, floats, a masked secret.
    monkeypatch.setenv("DRIFTLOOP_POLICY__METRIC_FLOORS", "{}")
    monkeypatch.setenv("DRIFTLOOP_TRAINING__HIDDEN", "[16, 8]")
    monkeypatch.setenv("DRIFTLOOP_STORAGE__S3__SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("DRIFTLOOP_DATABASE__URL", "postgresql+psycopg://u:pw@h/db")
    result = cli("config", "show", "--toml")
    assert result.code == 0, result.err
    assert "s3cr3t" not in result.out
    assert ":pw@" not in result.out
    shown = masked_dump(load_settings())
    saved = tmp_path / "saved.toml"
    saved.write_text(result.out)
    for key in ("DRIFTLOOP_POLICY__METRIC_FLOORS", "DRIFTLOOP_TRAINING__HIDDEN"):
        monkeypatch.delenv(key)  # from the file alone now
    loaded = load_settings(saved)
    assert loaded.policy.metric_floors == {}
    assert loaded.training.hidden == (16, 8) or list(loaded.training.hidden) == [16, 8]
    # The secrets are comments: what the environment still says fills them, as before.
    assert masked_dump(loaded) == shown
    monkeypatch.delenv("DRIFTLOOP_STORAGE__S3__SECRET_ACCESS_KEY")
    monkeypatch.delenv("DRIFTLOOP_DATABASE__URL")
    alone = load_settings(saved)
    assert alone.storage.s3.secret_access_key is None
    assert alone.database_url.startswith("sqlite:///")


def test_config_show_json_and_toml_together_is_a_usage_error(cli) -> None:
    result = cli("config", "show", "--json", "--toml")
    assert result.code == 2
    assert result.err.strip() == "error: give --json or --toml, not both"
