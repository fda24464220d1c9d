"""The dashboard over a real platform, in headless Chromium: every page renders, every chart has data,
no console errors, a screenshot of each kept under test-artifacts/dashboard/. And the Grafana dashboard
and Prometheus alert rules name only metrics the real service exports.

The platform: a private copy of the session's trained plant (no training) with v1 in production, two
days of captures (the second with torque shifted) and a real monitoring pass over each, a real
``driftloop serve`` that answered some requests (one of them invalid), the loop's ledger holding what a
retraining leaves (a promoted trigger with its shadow evidence, a suppressed one, a kept one, a rollback
guard), and ``driftloop ui`` as a user starts it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from driftloop.core.triggers import TriggerState
from driftloop.dashboard.html import PAGES
from driftloop.monitoring.history import decision_history
from driftloop.monitoring.live import SHADOW_EVIDENCE
from driftloop.runtime.processes import free_port
from driftloop.scheduling.ledger import Ledger
from driftloop.settings import load_settings
from driftloop.storage import store_for
from driftloop.storage.metadata import open_metadata
from tests.captured import capture_day, plain
from tests.conftest import wait_for
from tests.dashboard.browser import chromium
from tests.plant import AS_OF, copy_plant, in_process

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import MlflowServer
    from tests.plant import Plant

# A copy, a service and a dashboard to start, two monitoring passes: about a minute on this machine.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
DEPLOY = ROOT / "deploy"
DAYS = {"2026-01-05": 0.0, "2026-01-06": 20.0}  # day → torque shift (N): the second day drifts
# Compact at once: the monitor reads Parquet only (decision 0050).
CONFIG = "[capture]\ncompact_idle_s = 0.1\n"


class Platform:
    """The workspace, its running service and dashboard (both ``driftloop`` processes)."""

    def __init__(self, ws: Plant) -> None:
        self.ws = ws
        self.service_url = f"http://127.0.0.1:{free_port()}"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, ready: str) -> None:
        log = self.ws.directory / f"{args[0]}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "driftloop", *args],
                cwd=self.ws.directory,
                env=self.ws.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)

        def answering() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(ready, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answering, 180, f"driftloop {args[0]} at {ready}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def platform(
    trained_plant: Plant, mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    ws = copy_plant(
        trained_plant, tmp_path_factory.mktemp("dashboard") / "plant", mlflow_server, CONFIG, production=True
    )
    for day, shift in DAYS.items():
        capture_day(ws.directory, ws.name, day, torque_shift=shift, wal=f"wal-{day}")
        end = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
        in_process(ws.directory, "monitor", "--from", day, "--to", end, "--as-of", AS_OF)
    _loop_records(ws, mlflow_server)
    platform = Platform(ws)
    try:
        platform.start(
            "serve", "--port", platform.service_url.rsplit(":", 1)[1], ready=f"{platform.service_url}/ready"
        )
        _traffic(ws, platform.service_url)
        port = platform.url.rsplit(":", 1)[1]
        platform.start(
            "ui", "--port", port, "--service-url", platform.service_url, ready=f"{platform.url}/health"
        )
        yield platform
    finally:
        platform.stop()


def _loop_records(ws: Plant, server: MlflowServer) -> None:
    """What the loop leaves after acting on the drift: v2 registered by a retraining that went through
    shadow and was promoted under a rollback guard, a suppressed trigger, and a retraining kept."""
    client = MlflowClient(server.url)
    version = client.get_model_version(ws.name, "1")
    # MLflow 3 names a logged model (``models:/m-…``) by its id as well as by its source (tests.plant).
    model_id = version.source.removeprefix("models:/") if version.source.startswith("models:/m-") else None
    client.create_model_version(
        ws.name, version.source, version.run_id, dict(version.tags), model_id=model_id
    )
    settings = load_settings(ws.directory / "driftloop.toml")
    db = open_metadata(settings.database_url)
    try:
        ledger = Ledger(db)
        decision = decision_history(db, ws.name)[-1]
        now = datetime.now(UTC)
        common = {"model": ws.name, "mode": "automated", "decision_id": decision.id}
        promoted = ledger.add_trigger(
            kind="drift",
            reason="DRIFT: automated mode starts a retraining",
            state=TriggerState.TRAINING,
            now=now - timedelta(hours=3),
            **common,
        )
        ledger.update_trigger(promoted.id, pipeline_run=ws.pipeline_run, candidate_version=2)
        evidence = {
            "champion_version": 1,
            "challenger_version": 2,
            "labelled": 240,
            "pending": False,
            "margin": 0.01,
            "brier_difference": [-0.021, -0.004],
            "challenger_brier": 0.031,
            "champion_brier": 0.043,
        }
        shadow = {
            "name": SHADOW_EVIDENCE,
            "passed": True,
            "detail": "in shadow, v2 is no worse than v1",
            "evidence": evidence,
        }
        ledger.update_trigger(
            promoted.id,
            state=TriggerState.SHADOW,
            shadow_since=now - timedelta(hours=2),
            detail={SHADOW_EVIDENCE: shadow},
        )
        ledger.update_trigger(promoted.id, state=TriggerState.PROMOTED)
        ledger.add_trigger(
            kind="drift",
            reason="DRIFT: retraining 1 is still under way",
            state=TriggerState.SUPPRESSED,
            now=now - timedelta(hours=2),
            **common,
        )
        kept = ledger.add_trigger(
            kind="schedule",
            reason="schedule: nightly retraining",
            state=TriggerState.TRAINING,
            now=now - timedelta(hours=1),
            **(common | {"decision_id": None}),
        )
        ledger.update_trigger(
            kept.id,
            pipeline_run=ws.pipeline_run,
            state=TriggerState.KEPT,
            detail={"why": "offline comparison: not better"},
        )
        guard = ledger.add_guard(
            model=ws.name,
            version=2,
            previous_version=1,
            trigger_id=promoted.id,
            baseline=0.93,
            threshold=0.5,
            started_at=now - timedelta(minutes=30),
            until=now + timedelta(hours=23),
        )
        verdict = {
            "rollback": False,
            "reasons": [],
            "requests": 320,
            "error_rate": 0.0,
            "labelled": 210,
            "roc_auc": 0.95,
        }
        ledger.update_guard(guard.id, state="passed", verdict=verdict)
    finally:
        db.dispose()


def _traffic(ws: Plant, service: str) -> None:
    """Some predictions, and an invalid request (a refusal the traffic page counts)."""
    settings = load_settings(ws.directory / "driftloop.toml")
    store = store_for(settings)
    key = next(i.key for i in store.list("raw/plant/date=2026-01-06/") if i.key.endswith(".csv"))
    rows = pd.read_csv(store.uri(key)).drop(columns=["timestamp"]).head(40)
    instances = [{k: plain(v) for k, v in row.items()} for row in rows.to_dict("records")]
    for start in range(0, len(instances), 4):
        answer = httpx.post(
            f"{service}/v1/predict", json={"instances": instances[start : start + 4]}, timeout=30
        )
        assert answer.status_code == 200, answer.text
    bad = httpx.post(
        f"{service}/v1/predict", json={"instances": [{**instances[0], "torque_nm": "lots"}]}, timeout=30
    )
    assert bad.status_code == 422


# Points of every trace of every drawn chart (non-null x values), and how many chart places there are.
_COUNT_POINTS = """
const graphs = [...document.querySelectorAll('.js-plotly-plot')];
return {
  places: document.querySelectorAll('div.chart').length,
  points: graphs.map(g => g.data.reduce((n, t) => n + (t.x || []).filter(v => v !== null).length, 0)),
  traces: graphs.map(g => g.data.length),
};
"""


def test_every_page_renders_with_data_in_every_chart_and_no_console_error(platform: Platform) -> None:
    driver = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        for path in PAGES:
            driver.get(f"{platform.url}{path}")
            wait_for(
                lambda: (seen := driver.execute_script(_COUNT_POINTS))["places"] == len(seen["points"]),
                30,
                f"every chart of {path} drawn",
            )
            seen = driver.execute_script(_COUNT_POINTS)
            assert seen["places"] >= 1, f"{path} has no chart"
            assert all(n > 0 for n in seen["points"]), f"{path}: a chart without data: {seen}"
            assert "warn" not in driver.execute_script(
                "return [...document.querySelectorAll('p')].map(p => p.className).join(' ')"
            ), f"{path} shows a warning: {driver.find_element('tag name', 'main').text[:500]}"
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert errors == [], f"{path}: console errors {errors}"
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1400, min(max(height + 200, 1000), 8000))  # + the window frame
            shot = ARTIFACTS / f"{path.strip('/')}.png"
            driver.save_screenshot(str(shot))
            driver.set_window_size(1400, 1000)
    finally:
        driver.quit()
    print(f"dashboard screenshots: {ARTIFACTS}")


def test_the_pages_show_what_the_platform_recorded(platform: Platform) -> None:
    """The JSON behind the pages, checked against what was put in (the browser test checks drawing)."""
    get = lambda name: httpx.get(f"{platform.url}/api/{name}", timeout=30).json()  # noqa: E731
    models = get("models")
    assert [v["version"] for v in models["versions"]] == [2, 1]
    assert models["versions"][1]["stage"] == "Production"
    assert models["versions"][0]["trigger"] == 1  # v2 was made by the promoted trigger
    assert {a["actor"] for a in models["audit"]} >= {"t"}  # the approval's identity
    drift = get("drift")
    torque = next(s for s in drift["features"] if s["name"] == "torque_nm")
    assert [p["drifted"] for p in torque["points"]] == [False, True]
    assert all(p["threshold"] is not None for p in torque["points"])  # from the reports
    assert [p["window_end"][:10] for p in torque["points"]] == ["2026-01-06", "2026-01-07"]
    traffic = get("traffic")
    assert traffic["reachable"] is True
    assert traffic["refusals"] == {"invalid input": 1.0}
    assert {r["path"] for r in traffic["requests"]} >= {"/v1/predict"}
    assert get("shadow")["comparisons"][0]["challenger_brier"] == 0.031
    assert [t["state"] for t in get("retrainings")["retrainings"]] == ["promoted", "kept"]
    assert get("guards")["guards"][0]["verdict"]["roc_auc"] == 0.95


def _exported(service: str) -> set[str]:
    """Every metric name the service's /metrics holds, with the suffixes Prometheus derives."""
    text = httpx.get(f"{service}/metrics", timeout=10).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def _referenced(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in re.findall(r"\bdriftloop_[a-z0-9_]+", expr)}


def test_grafana_and_alert_rules_name_only_metrics_the_service_exports(platform: Platform) -> None:
    # The monitor's gauges reach /metrics once the service has read latest.prom (at start).
    wait_for(
        lambda: "driftloop_monitor_decision" in _exported(platform.service_url), 30, "the monitor's gauges"
    )
    exported = _exported(platform.service_url)
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alert_exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "driftloop.json").read_text())
    panel_exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for what, exprs in (("alerts.yml", alert_exprs), ("driftloop.json", panel_exprs)):
        referenced = _referenced(exprs)
        assert len(referenced) >= 8, f"{what} names too few metrics to mean anything: {referenced}"
        assert referenced <= exported, (
            f"{what} names metrics the service does not export: {referenced - exported}"
        )
    # The check can fail: a misspelt name is caught.
    assert not _referenced(["rate(driftloop_request_total[5m])"]) <= exported
