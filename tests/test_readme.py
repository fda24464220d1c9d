"""The README's examples are part of the contract: its configuration must load as written."""

from __future__ import annotations

import re
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
