"""The README's examples are part of the contract: its configuration must load as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from driftloop.settings import load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_example_is_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README shows a driftloop.toml"
    (tmp_path / "driftloop.toml").write_text(blocks[0])
    settings = load_settings(cwd=tmp_path)
    assert settings.storage_root == "s3://plant-bucket/driftloop"
    assert settings.pipeline.runner.type == "local"
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text
    assert "make test" in text


def test_the_quick_tour_uses_real_commands_and_options() -> None:
    """Every command line of the quick tour names a command that exists and options it takes (the tour
    runs `demo` after the others: the demo's own home, decision 0063, keeps them apart)."""
    from driftloop.cli.main import build_command

    text = README.read_text()
    tour = text.split("## Quick tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0] for line in tour.replace("\\\n", " ").splitlines()]
    calls = [shlex.split(line.split("driftloop", 1)[1]) for line in lines if "driftloop" in line]
    assert len(calls) > 10
    root, paths = build_command(), []
    for words in calls:
        command, path = root, []
        while words and words[0] in getattr(command, "commands", {}):
            path.append(words.pop(0))
            command = command.commands[path[-1]]  # type: ignore[attr-defined]
        assert path, words
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        for word in words:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in options, (path, word)
        paths.append(" ".join(path))
    assert paths.index("demo") > paths.index("pipeline run")  # the tour's data exists when the demo runs
