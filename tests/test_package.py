"""The public surface and the packaging: changes here must be deliberate."""

from __future__ import annotations

from pathlib import Path

import driftloop

SRC = Path(driftloop.__file__).parent


def test_public_api_is_small_and_deliberate() -> None:
    assert sorted(driftloop.__all__) == ["DriftloopError", "Settings", "__version__", "load_settings"]


def test_every_package_directory_is_a_regular_package() -> None:
    # A directory without __init__.py imports as a namespace package in a source checkout but is left
    # out of the wheel: catch it here rather than in a user's install.
    missing = [
        str(d.relative_to(SRC))
        for d in SRC.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists()
    ]
    assert missing == []


def test_migrations_ship_with_the_package() -> None:
    migrations = SRC / "storage" / "metadata" / "migrations"
    assert (migrations / "env.py").exists()
    assert (migrations / "script.py.mako").exists()
    assert sorted(p.name for p in (migrations / "versions").glob("v*.py"))[0] == "v0001_simulations.py"


def test_the_dashboards_static_files_ship_with_the_package() -> None:
    import tomllib

    pyproject = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    assert "dashboard/static/*" in pyproject["tool"]["setuptools"]["package-data"]["driftloop"]
    assert sorted(p.name for p in (SRC / "dashboard" / "static").iterdir()) == [
        "dashboard.css",
        "dashboard.js",
    ]
