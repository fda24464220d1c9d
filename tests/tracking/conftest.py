from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer

# Small and quick: the point is the plumbing, the benchmark measures speed.
TRAINING = "[training]\nmax_epochs = 4\nhidden = [16]\nbatch_size = 256\n"


@pytest.fixture
def tracked(tmp_path: Path, mlflow_server: MlflowServer) -> str:
    """A driftloop.toml pointing at the session's MLflow server, with this test's own experiment and model."""
    suffix = uuid.uuid4().hex[:8]
    model = f"plant-{suffix}"
    (tmp_path / "driftloop.toml").write_text(
        f'[tracking]\nuri = "{mlflow_server.url}"\nexperiment = "exp-{suffix}"\n'
        f'[registry]\nmodel_name = "{model}"\n{TRAINING}'
    )
    return model


def churn_csv(path: Path, rows: int = 1200, seed: int = 0) -> Path:
    """A non-plant dataset: numbers, a category, a free-text column and a yes/no target."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    logit = -2 + 0.04 * (charges - 70) - 0.05 * (tenure - 36) + np.where(plan == "basic", 1.0, 0.0)
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "customer": [f"c{i:05d}" for i in range(rows)],
            "note": [f"free text {rng.integers(1e9)}" for _ in range(rows)],
            "tenure_months": tenure,
            "monthly_charges": charges,
            "plan": plan,
            "churned": churned,
        }
    )
    frame.to_csv(path, index=False)
    return path
