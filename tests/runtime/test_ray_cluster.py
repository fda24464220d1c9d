"""Ray is optional: choosing it needs no Ray until it is used, and a missing Ray is one readable error."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from driftloop.errors import ConfigError
from driftloop.pipeline.executors import executor_for
from driftloop.pipeline.ray_executor import RayExecutor
from driftloop.runtime.ray_cluster import connected
from driftloop.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path


def test_the_ray_runner_is_chosen_by_name_and_runs_the_step_command(tmp_path: Path) -> None:
    config = tmp_path / "driftloop.toml"
    config.write_text('[pipeline.runner]\ntype = "ray"\nnum_cpus = 0.5\n[ray]\naddress = "10.1.2.3:6379"\n')
    settings = load_settings(config)
    executor = executor_for(settings)
    assert isinstance(executor, RayExecutor)
    assert executor.command("train", "r1") == [
        "driftloop",
        "--config",
        str(config),
        "pipeline",
        "step",
        "train",
        "--run",
        "r1",
    ]
    assert settings.ray.address == "10.1.2.3:6379"


def test_using_ray_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like to import
    expected = r"monitoring.engine.*pip install 'driftloop\[ray\]'"
    with pytest.raises(ConfigError, match=expected), connected("auto", 'monitoring.engine = "ray"'):
        pass
