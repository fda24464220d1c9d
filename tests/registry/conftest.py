"""A git checkout with two pipeline-registered versions of a model, on the session's MLflow server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import metadata_url
from tests.workspace import Workspace, make_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.conftest import MlflowServer

TRAINING = "[training]\nmax_epochs = 30\nhidden = [32]\nlearning_rate = 0.005\n"
# Slices of a few thousand simulated rows are small; the bounds are loose enough for them to pass.
POLICY = "[policy]\nslice_floors = { roc_auc = 0.6 }\nslice_min_rows = 100\ncomparison_min_rows = 300\n"

Plant = Workspace


@pytest.fixture(scope="session")
def plant(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Versions 1 and 2 of the model from two pipeline runs over growing windows, in a clean checkout
    (so the reproducibility check can pass)."""
    p = make_workspace(tmp_path_factory.mktemp("plant"), mlflow_server, TRAINING + POLICY, git=True)
    p.ok("simulate", "--start", "2026-01-01", "--days", "8", "--rows-per-day", "2000", "--seed", "3")
    p.ok("pipeline", "run", "--from", "2026-01-01", "--to", "2026-01-05", "--as-of", "2026-01-12")
    p.ok("pipeline", "run", "--from", "2026-01-01", "--to", "2026-01-07", "--as-of", "2026-01-12")
    return p


# Kill -9 and race scenarios are 20-50 s each: SQLite's run in the fast lane, PostgreSQL's in the slow
# lane (docs/testing.md), which .ci/run runs too.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from metadata_url(request, tmp_path)
