"""``kill -9`` of a loop worker at each phase of a retraining, a second worker running beside it on the
same PostgreSQL: the second takes the trigger over and the loop finishes exactly once — one pipeline
run (succeeded), one candidate, one promotion, one guard, nothing left running or held.

The workers are real processes (``tests/scheduling/run_loop_worker.py``) over one MLflow server; the
pipeline steps run in their own processes, which must die with the worker that started them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from driftloop.core.models import Stage
from driftloop.core.runs import RunStatus, StepStatus
from driftloop.errors import NotFoundError
from driftloop.pipeline import records
from driftloop.registry.audit import AuditLog
from driftloop.scheduling.ledger import Ledger, Trigger
from driftloop.settings import load_settings
from driftloop.simulate import SimulationRequest, simulate
from driftloop.storage import store_for
from driftloop.storage.metadata import open_metadata
from tests.conftest import postgres_schema, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from driftloop.storage.metadata import Database
    from tests.conftest import MlflowServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
START = date(2026, 1, 1)
CONFIG = """
[training]
max_epochs = 8
hidden = [16]
learning_rate = 0.005
[policy]
require_approval_for = []
advisory_checks = ["reproducibility"]
slice_floors = { roc_auc = 0.5 }
slice_min_rows = 100
comparison_min_rows = 300
shadow_min_labels = 0
comparison_margin = 1.0
[schedule]
retrain_days = 8
"""


@dataclass
class Plant:
    home: Path
    name: str
    db: Database
    tracking: str
    url: str
    logs: dict[int, Path] = field(default_factory=dict)
    end: date = START

    def new_day(self) -> date:
        """Simulate the day after the newest one, so a retraining reads data no earlier one has seen
        (the same window would be served from the pipeline's cache, trained and registered once)."""
        self.end += timedelta(days=1)
        request = SimulationRequest(
            dataset="plant",
            start=self.end,
            days=1,
            rows_per_day=1000,
            machines=10,
            seed=self.end.toordinal(),
            label_delay=timedelta(hours=24),
        )
        simulate(request, store_for(load_settings(self.config())))
        return self.end

    def config(self, extra: str = "") -> Path:
        path = self.home.parent / f"driftloop-{uuid.uuid4().hex[:8]}.toml"
        path.write_text(
            f'home = "{self.home}"\n[database]\nurl = "{self.url}"\n[tracking]\nuri = "{self.tracking}"\n'
            f'[registry]\nmodel_name = "{self.name}"\n{CONFIG}\n{extra}'
        )
        return path

    def worker(
        self, config: Path, end: date, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        path = self.home.parent / f"worker-{uuid.uuid4().hex[:8]}.log"
        command = [sys.executable, "-m", "tests.scheduling.run_loop_worker", str(config), end.isoformat()]
        # The caller's PYTHONPATH stays: a worktree's driftloop, not the one the venv was installed from.
        imports = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        environ = {**os.environ, "PYTHONPATH": imports, **(env or {})}
        with path.open("w") as log:
            proc = subprocess.Popen(
                [*command, *args], cwd=REPO, env=environ, text=True, stdout=log, stderr=subprocess.STDOUT
            )
        self.logs[proc.pid] = path
        return proc

    def log(self, proc: subprocess.Popen[str]) -> str:
        return self.logs[proc.pid].read_text()[-3000:]

    def triggers(self) -> list[Trigger]:
        return Ledger(self.db).triggers(self.name)


@pytest.fixture(scope="module")
def pg_url(postgres_url: str) -> Iterator[str]:
    """One PostgreSQL schema for the module (both workers and the test read it)."""
    with postgres_schema(postgres_url) as url:
        yield url


@pytest.fixture(scope="module")
def plant(
    pg_url: str, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plant]:
    """A week of plant data and v1 in production, put there by a worker (no champion: straight through)."""
    home = tmp_path_factory.mktemp("takeover") / "home"
    db = open_metadata(pg_url)
    try:
        plant = Plant(home, f"takeover-{uuid.uuid4().hex[:6]}", db, mlflow_server.url, pg_url)
        for _ in range(8):
            end = plant.new_day()
        first = plant.worker(plant.config(), end, "trigger")
        assert first.wait(timeout=600) == 0, plant.log(first)
        assert [t.state for t in plant.triggers()] == ["promoted"], plant.triggers()
        yield plant
    finally:
        db.dispose()


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc: children of children, …)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _versions(plant: Plant) -> int:
    from mlflow import MlflowClient

    return len(MlflowClient(plant.tracking).search_model_versions(f"name = '{plant.name}'"))


# (phase, how the first worker dies, extra configuration, the state the loop must end in)
PHASES = [
    pytest.param("train", None, "", "promoted", id="training"),
    pytest.param(None, "loop:registered", "", "promoted", id="registering"),
    pytest.param(None, "intent", "", "promoted", id="gating"),
    pytest.param(
        None, "loop:shadow", "shadow_min_labels = 50\nshadow_max_hours = 0.0001", "kept", id="shadow"
    ),
    pytest.param(None, "loop:promoted", "", "promoted", id="promoting"),
]


@pytest.mark.parametrize(("step", "crash_at", "policy", "ends"), PHASES)
def test_a_worker_killed_at_any_phase_is_taken_over_and_the_loop_finishes_once(
    plant: Plant, step: str | None, crash_at: str | None, policy: str, ends: str
) -> None:
    config = plant.config()
    # Policy keys through the environment (a second [policy] table would be invalid TOML).
    settings = (line.split("=") for line in policy.splitlines())
    env = {f"DRIFTLOOP_POLICY__{key.strip().upper()}": value.strip() for key, value in settings}
    before = max(t.id for t in plant.triggers())
    versions = _versions(plant)
    champion = AuditLog(plant.db).holder(plant.name, Stage.PRODUCTION)

    end = plant.new_day()
    first = plant.worker(config, end, "trigger", *([crash_at] if crash_at else []), env=env)
    second = plant.worker(config, end, "advance", str(before), env=env)
    try:
        family: set[int] = set()
        if step is not None:  # killed from outside while the step runs in its own process

            def running() -> bool:
                mine = [t for t in plant.triggers() if t.id > before and t.pipeline_run]
                if not mine:
                    return False
                try:
                    with_run = records.get_run(plant.db, mine[0].pipeline_run or "")
                except NotFoundError:  # the run's id is on the trigger just before the run exists
                    return False
                return with_run.step(step).status == StepStatus.RUNNING

            wait_for(running, timeout=300, what=f"the {step} step to run")
            family = _descendants(first.pid)
            assert family, "the step runs in processes below the worker"
            first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=600) == -signal.SIGKILL, plant.log(first)
        assert second.wait(timeout=900) == 0, plant.log(second)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Nothing the killed worker started outlives it (its step, the fork server, the resource tracker).
    wait_for(lambda: not any(_alive(pid) for pid in family), timeout=10, what="the killed worker's processes")

    _finished_once(plant, before, first.pid, versions=versions, champion=champion, ends=ends)


def _finished_once(
    plant: Plant, before: int, killed: int, *, versions: int, champion: int | None, ends: str
) -> None:
    """One trigger, taken over once from ``killed``; one run, succeeded; one candidate; one promotion."""
    mine = [t for t in plant.triggers() if t.id > before]
    assert len(mine) == 1, mine
    trigger = mine[0]
    assert trigger.state == ends, trigger.detail
    assert trigger.holder is None
    assert trigger.detail["takeovers"] == 1
    assert trigger.detail["taken_over_from"].split(":")[1] == str(killed)
    # One pipeline run, finished; nothing anywhere left running.
    run = records.get_run(plant.db, trigger.pipeline_run or "")
    assert run.status == RunStatus.SUCCEEDED
    assert all(r.status != RunStatus.RUNNING for r in records.list_runs(plant.db, limit=100))
    # One candidate, registered once.
    assert _versions(plant) == versions + 1
    assert trigger.candidate_version == versions + 1
    audit = AuditLog(plant.db)
    promotions = [
        t
        for t in audit.history(plant.name, version=trigger.candidate_version)
        if t.to_stage == Stage.PRODUCTION and t.outcome == "done"
    ]
    guards = [g for g in Ledger(plant.db).guards(plant.name) if g.trigger_id == trigger.id]
    if ends == "promoted":
        assert audit.holder(plant.name, Stage.PRODUCTION) == trigger.candidate_version
        assert len(promotions) == 1, promotions
        assert len(guards) == 1, guards
        assert guards[0].previous_version == champion
    else:
        assert audit.holder(plant.name, Stage.PRODUCTION) == champion
        assert promotions == []
        assert guards == []
        assert audit.stages(plant.name).get(trigger.candidate_version, Stage.NONE) == Stage.NONE
