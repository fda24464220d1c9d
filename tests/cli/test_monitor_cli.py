"""``driftloop monitor`` end to end: a production model, captured traffic with a shifted sensor, the
decision row, the history and the report files; and its one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from mlflow.tracking import MlflowClient

from driftloop.dashboard.sources import drift_series
from driftloop.monitoring.history import decision_history
from driftloop.monitoring.run import monitor_once
from driftloop.settings import load_settings
from driftloop.storage import store_for
from driftloop.storage.metadata import MonitorDecisionRow, open_metadata
from tests.captured import capture_day
from tests.plant import Plant, copy_plant
from tests.workspace import Workspace, make_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.conftest import MlflowServer, Result

DAY = "2026-01-06"  # the last simulated day: its delayed labels are known by --as-of
TORQUE_SHIFT = 20.0  # newtons: two reference standard deviations


@pytest.fixture(scope="module")
def production(
    trained_plant: Plant, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    """A copy of the session's plant (tests.plant: simulated up to DAY) with version 1 in Production,
    and the predictions it served on DAY captured with torque shifted."""
    directory = tmp_path_factory.mktemp("monitor") / "plant"
    ws = copy_plant(trained_plant, directory, mlflow_server, production=True)
    capture_day(ws.directory, ws.name, DAY, torque_shift=TORQUE_SHIFT)
    return ws


def test_monitor_records_the_decision_and_writes_the_reports(production: Workspace) -> None:
    out = production.ok("monitor", "--from", DAY, "--to", "2026-01-07", "--as-of", "2026-01-10")
    assert f"{production.name} v1" in out
    assert "torque_nm" in out
    settings = load_settings(production.directory / "driftloop.toml")
    db = open_metadata(settings.database_url)
    try:
        with db.session() as session:
            rows = session.query(MonitorDecisionRow).filter_by(model=production.name).all()
    finally:
        db.dispose()
    assert len(rows) == 1
    row = rows[0]
    assert row.decision in ("WARN", "DRIFT", "DECAY")
    assert row.version == 1
    assert "torque_nm" in row.summary["drifted_features"]
    assert row.summary["rows"] == 2000
    assert row.summary["performance"]["labelled"] > 0  # the simulator's delayed labels joined by record_id
    assert row.window_start.isoformat() == f"{DAY}T00:00:00+00:00"

    store = store_for(settings)
    root = store.uri("x").removesuffix("x")
    key = row.report_uri.removeprefix(root).removesuffix("report.html")
    assert key.startswith(f"monitoring/{production.name}/")
    page = store.read_bytes(f"{key}report.html").decode()
    assert page.count('class="feature-chart"') == 6
    document = json.loads(store.read_bytes(f"{key}report.json"))
    assert document["decision"] == row.decision
    assert document["version"] == 1
    gauges = store.read_bytes(f"monitoring/{production.name}/latest.prom").decode()
    assert (
        f'driftloop_monitor_decision{{model="{production.name}",state="{row.decision}",version="1"}} 1.0'
        in gauges
    )
    assert "mlflow    run " in out  # logged to MLflow as its own run
    # ... in the monitoring experiment, apart from the training runs (decision 0064).
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(out.split("mlflow    run ", 1)[1].split()[0])
    assert client.get_experiment(run.info.experiment_id).name == f"{settings.tracking.experiment}/monitoring"
    assert run.data.tags["driftloop.kind"] == "monitoring"
    assert run.data.tags["mlflow.source.name"] == "driftloop monitor"

    history = production.ok("monitor", "history")
    assert f"#{row.id}" in history
    assert row.decision in history
    assert row.report_uri in history


def test_monitor_says_when_shipped_captures_wait_for_compaction(plant_copy: Callable[..., Plant]) -> None:
    ws = plant_copy(production=True)
    capture_day(ws.directory, ws.name, DAY, torque_shift=TORQUE_SHIFT, compact=False)
    window = ("monitor", "--from", DAY, "--to", "2026-01-07", "--as-of", "2026-01-10")
    refused = ws.run(*window)
    assert refused.returncode == 1
    assert "no captured predictions in the window" in refused.stderr
    assert "run `driftloop capture compact`, then monitor again" in refused.stderr
    ws.ok("capture", "compact")
    assert "torque_nm" in ws.ok(*window)


def test_a_pass_records_the_period_its_traffic_describes(plant_copy: Callable[..., Plant]) -> None:
    """A replay (the demo's simulated day) is captured now but describes another day: the pass records
    that period, and the report's title, the history and the dashboard's axes use it."""
    ws = plant_copy(production=True)
    capture_day(ws.directory, ws.name, DAY, torque_shift=TORQUE_SHIFT)
    settings = load_settings(ws.directory / "driftloop.toml")
    captured = (
        datetime.fromisoformat(f"{DAY}T00:00:00+00:00"),
        datetime.fromisoformat("2026-01-07T00:00:00+00:00"),
    )
    replayed = (datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 3, 2, tzinfo=UTC))
    result = monitor_once(
        settings, start=captured[0], end=captured[1], as_of=datetime(2026, 1, 10, tzinfo=UTC), period=replayed
    )
    assert result.decision.period == replayed
    assert (result.decision.start, result.decision.end) == captured  # the capture window is still the window
    store = store_for(settings)
    key = result.json_uri.removeprefix(store.uri("x").removesuffix("x"))
    assert json.loads(store.read_bytes(key))["period"] == {
        "start": replayed[0].isoformat(),
        "end": replayed[1].isoformat(),
    }
    page = store.read_bytes(key.replace("report.json", "report.html")).decode()
    assert "2030-03-01 00:00 → 2030-03-02 00:00 UTC" in page
    assert "2030-03-01 00:00 → 2030-03-02 00:00" in ws.ok("monitor", "history")
    db = open_metadata(settings.database_url)
    try:
        [stored] = decision_history(db, ws.name)
    finally:
        db.dispose()
    assert stored.period == replayed
    features, _, _ = drift_series([stored])
    assert {p.window_end for series in features for p in series.points} == {replayed[1]}


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--from", "2026-02-01", "--to", "2026-02-02"], 1, "no captured predictions in the window"),
        (["--from", "2026-02-01", "--to", "2026-02-01"], 2, "empty monitoring window"),
        (["--window", "1d", "--from", "2026-02-01"], 2, "either --window or --from"),
        (["--to", "yesterday"], 2, "invalid --to"),
    ],
)
def test_monitor_errors_are_one_line(  # noqa: PLR0917 — fixtures plus parameters
    cli: Callable[..., Result],
    production: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    fragment: str,
) -> None:
    # In-process: the end-to-end test above already runs monitor as its own process.
    monkeypatch.chdir(production.directory)
    done = cli("monitor", *args)
    assert done.code == code, done.out + done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert fragment in lines[0]


def test_monitor_without_a_production_model(
    cli: Callable[..., Result], mlflow_server: MlflowServer, tmp_path: Any
) -> None:
    ws = make_workspace(tmp_path, mlflow_server)  # the test's own directory is the working directory
    done = cli("monitor", "--window", "1h")
    assert done.code == 1
    assert done.err.strip().splitlines() == [
        f"error: no production version of {ws.name}: promote one first (driftloop promote {ws.name} VERSION "
        "--to production)"
    ]
    history = cli("monitor", "history")
    assert history.code == 0, history.err
    assert f"no monitoring decisions recorded for {ws.name}" in history.out
