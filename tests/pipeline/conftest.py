from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from driftloop.pipeline.execute import execute_step
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.runner import Runner
from driftloop.pipeline.training import training_pipeline
from driftloop.settings import Settings, load_settings
from driftloop.simulate import SimulationRequest, parse_drift, simulate
from driftloop.storage import ObjectStore, store_for
from driftloop.storage.metadata import Database, open_metadata

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from driftloop.pipeline.spec import Pipeline

START = date(2026, 1, 1)
AS_OF = datetime(2026, 1, 10, tzinfo=UTC)


class InProcessExecutor:
    """Runs the step command's body in this process: same code path as `pipeline step`, minus the fork."""

    def __init__(self, settings: Settings, db: Database, store: ObjectStore, pipeline: Pipeline) -> None:
        self.settings, self.db, self.store, self.pipeline = settings, db, store, pipeline
        self.calls: list[str] = []

    def run(self, step: str, run_id: str, log: Path, timeout_s: float) -> int:
        self.calls.append(step)
        ok = execute_step(self.settings, self.db, self.store, self.pipeline, run_id=run_id, step=step)
        return 0 if ok else 1


@dataclass
class Env:
    settings: Settings
    db: Database
    store: ObjectStore

    def runner(self, pipeline: Pipeline | None = None) -> tuple[Runner, InProcessExecutor]:
        pipe = pipeline or training_pipeline()
        executor = InProcessExecutor(self.settings, self.db, self.store, pipe)
        return Runner(self.settings, self.db, self.store, pipe, executor), executor

    def simulate(self, days: int = 4, rows: int = 1500, drifts: tuple[str, ...] = (), seed: int = 1) -> None:
        simulate(
            SimulationRequest(
                dataset="plant",
                start=START,
                days=days,
                rows_per_day=rows,
                machines=10,
                seed=seed,
                label_delay=timedelta(hours=24),
                drifts=tuple(parse_drift(d, START) for d in drifts),
            ),
            self.store,
        )


def params(**overrides: object) -> RunParams:
    """Run parameters; by default the data half of the DAG (runner logic does not need a model —
    the training half is tested end to end against a real MLflow server in tests/tracking)."""
    values: dict[str, object] = {"dataset": "plant", "as_of": AS_OF, "until": "features"}
    values.update(overrides)
    return RunParams.model_validate(values)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> Iterator[Env]:
    (tmp_path / "driftloop.toml").write_text(f'[database]\nurl = "{db_url}"\n')
    settings = load_settings(cwd=tmp_path)
    db = open_metadata(settings.database_url)
    yield Env(settings, db, store_for(settings))
    db.dispose()
