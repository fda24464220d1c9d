"""``driftloop monitor`` with ``monitoring.engine = "ray"``: the same decision row as the in-process pass
over the same captured day of a production model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from driftloop.settings import load_settings
from driftloop.storage.metadata import MonitorDecisionRow, open_metadata
from tests.captured import capture_day
from tests.plant import Plant, copy_plant

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import MlflowServer

pytestmark = pytest.mark.ray

DAY = "2026-01-06"
WINDOW = ("--from", DAY, "--to", "2026-01-07", "--as-of", "2026-01-10")


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.10g}")  # sums in another order differ in their last bits only
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_a_monitor_pass_on_ray_records_the_in_process_decision(
    ray_address: str, trained_plant: Plant, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    ws = copy_plant(trained_plant, tmp_path / "plant", mlflow_server, production=True)
    capture_day(ws.directory, ws.name, DAY, torque_shift=20.0)
    local = ws.run("monitor", *WINDOW)
    assert local.returncode == 0, local.stderr
    on_ray = ws.run(
        "monitor",
        *WINDOW,
        extra_env={"DRIFTLOOP_MONITORING__ENGINE": "ray", "DRIFTLOOP_RAY__ADDRESS": ray_address},
    )
    assert on_ray.returncode == 0, on_ray.stderr
    settings = load_settings(ws.directory / "driftloop.toml")
    db = open_metadata(settings.database_url)
    try:
        with db.session() as session:
            rows = (
                session.query(MonitorDecisionRow)
                .filter_by(model=ws.name)
                .order_by(MonitorDecisionRow.id)
                .all()
            )
            decided = [(r.decision, list(r.reasons), _rounded(r.summary)) for r in rows]
    finally:
        db.dispose()
    assert len(decided) == 2
    assert decided[1] == decided[0]
    assert "torque_nm" in decided[0][2]["drifted_features"]  # type: ignore[index]
