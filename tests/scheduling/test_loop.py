"""The closed loop with real parts: pipeline subprocesses, MLflow registry, promotion policy, captures.

One module-scoped plant: a simulated week and v1 put in production by the loop itself (no champion:
the first model goes straight through). Each test leaves v1 in production for the next.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from driftloop.capture.parquet import parquet_objects
from driftloop.core.models import Stage
from driftloop.scheduling.loop import ACTOR, Loop
from driftloop.settings import load_settings
from driftloop.simulate import SimulationRequest, parse_drift, simulate
from driftloop.storage import store_for
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from driftloop.scheduling.ledger import Trigger
    from driftloop.settings import Settings

pytestmark = pytest.mark.timeout(900)

START, END = date(2026, 1, 1), date(2026, 1, 8)
AS_OF = datetime(2026, 1, 10, tzinfo=UTC)
CONFIG = """
[training]
max_epochs = 12
hidden = [32]
learning_rate = 0.005
[policy]
require_approval_for = []
advisory_checks = ["reproducibility"]
slice_floors = { roc_auc = 0.6 }
slice_min_rows = 100
comparison_min_rows = 300
shadow_min_labels = 0
guard_max_error_rate = 0.05
[schedule]
retrain_days = 8
"""  # an ``extra`` starting with schedule keys continues this section


def _settings(home: Path, extra: str = "") -> Settings:
    path = home.parent / f"driftloop-{abs(hash(extra))}.toml"
    path.write_text(f'home = "{home}"\n{CONFIG}\n{extra}')
    return load_settings(path)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plant with a week of data and v1 in production, put there by the loop."""
    home = tmp_path_factory.mktemp("loop") / "home"
    settings = _settings(home)
    request = SimulationRequest(
        dataset="plant", start=START, days=(END - START).days + 1, rows_per_day=1500, machines=10, seed=3,
        label_delay=timedelta(hours=24),
    )  # fmt: skip
    simulate(request, store_for(settings))
    with _loop(settings) as loop:
        first = loop.trigger("manual", "the first model", as_of=AS_OF, end_day=END)
        assert first.state == "promoted", first.detail
        assert _production(loop) == 1
    return home


@pytest.fixture(autouse=True)
def _model_env() -> Iterator[None]:
    """Keep one module's configuration out of the next's (pipeline steps read the environment)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


class _loop:  # noqa: N801 — a context manager used like a function
    def __init__(self, settings: Settings) -> None:
        self.db = open_metadata(settings.database_url)
        self.loop = Loop(settings, self.db)

    def __enter__(self) -> Loop:
        return self.loop

    def __exit__(self, *_: object) -> None:
        self.db.dispose()


def _production(loop: Loop) -> int | None:
    found = loop.registry.by_alias(loop.name, "production")
    return found.version if found else None


def _assert_champion_kept(loop: Loop, trigger: Trigger) -> None:
    assert _production(loop) == 1
    assert loop.registry.by_alias(loop.name, "staging") is None
    if trigger.candidate_version is not None:
        assert loop.registry.get(loop.name, trigger.candidate_version).stage == Stage.NONE


def test_a_broken_model_factory_never_reaches_production(home: Path) -> None:
    os.environ["DRIFTLOOP_TRAINING__MODEL_FACTORY"] = "tests.scheduling.bad_factories:broken"  # steps too
    settings = _settings(home)
    with _loop(settings) as loop:
        trigger = loop.trigger("manual", "retrain with a broken factory", as_of=AS_OF, end_day=END)
        assert trigger.state == "failed"
        assert trigger.pipeline_run is not None
        assert "pipeline failed" in trigger.detail["why"]
        assert trigger.candidate_version is None
        _assert_champion_kept(loop, trigger)


def test_a_useless_model_is_refused_at_staging_and_the_champion_stays(home: Path) -> None:
    os.environ["DRIFTLOOP_TRAINING__MODEL_FACTORY"] = "tests.scheduling.bad_factories:blind"
    settings = _settings(home)
    with _loop(settings) as loop:
        trigger = loop.trigger("manual", "retrain with a blind model", as_of=AS_OF, end_day=END)
        assert trigger.state == "kept"
        assert trigger.candidate_version is not None
        assert "metric_floors" in trigger.detail["why"]
        _assert_champion_kept(loop, trigger)
        refused = [
            t for t in loop.promoter.history(loop.name, trigger.candidate_version) if t.outcome == "refused"
        ]
        assert refused, "the refusal is in the audit history"


def test_corrupt_data_stops_the_retraining_as_a_data_incident(home: Path) -> None:
    settings = _settings(home)
    store = store_for(settings)
    day = END + timedelta(days=1)
    request = SimulationRequest(
        dataset="plant", start=day, days=2, rows_per_day=1500, machines=10, seed=4,
        label_delay=timedelta(hours=24),
        drifts=(parse_drift(f"corrupt:start={day},severity=0.6", default_start=day),),
    )  # fmt: skip
    simulate(request, store)
    try:
        with _loop(settings) as loop:
            trigger = loop.trigger("manual", "retrain on corrupt data", as_of=AS_OF + timedelta(days=3),
                                   end_day=day + timedelta(days=1))  # fmt: skip
            assert trigger.state == "failed"
            assert "validate" in trigger.detail["why"]
            _assert_champion_kept(loop, trigger)
    finally:
        for kind in ("raw", "labels"):
            for k in range(4):
                for info in list(store.list(f"{kind}/plant/date={day + timedelta(days=k)}/")):
                    store.delete(info.key)


def _captures(settings: Settings, *, answered: int, fallback: bool, n: int, since: datetime) -> None:
    """``n`` captured predictions answered by version ``answered``, just after ``since``."""
    stamps = [(since + timedelta(microseconds=1 + i)).isoformat(timespec="microseconds") for i in range(n)]
    records = [
        {"kind": "prediction", "prediction_id": f"g{fallback:d}-{i:05d}", "ts": stamps[i],
         "model_name": settings.registry.model_name, "model_version": answered, "inputs": {}, "outputs": {},
         "score": 0.1, "latency_ms": 1.0, "fallback": fallback, "endpoint": "/v1/predict"}
        for i in range(n)
    ]  # fmt: skip
    store = store_for(settings)
    for key, data in parquet_objects(records, f"test-{fallback:d}-{since.timestamp():.0f}"):
        store.write_bytes(key, data)


def test_the_guard_rolls_back_a_promoted_version_that_keeps_failing_live(home: Path) -> None:
    settings = _settings(home)
    with _loop(settings) as loop:
        trigger = loop.trigger("manual", "a good retraining", as_of=AS_OF, end_day=END)
        assert trigger.state == "promoted", trigger.detail
        new = trigger.candidate_version
        assert _production(loop) == new
        (guard,) = loop.ledger.guards(loop.name, states=("watching",))
        assert (guard.version, guard.previous_version) == (new, 1)
        loop.advance()  # no live traffic yet: nothing to judge, the guard keeps watching
        assert loop.ledger.guards(loop.name, states=("watching",))
        # Live: the new version raises on 40 % of requests, which the previous version answers (fallback).
        _captures(settings, answered=new, fallback=False, n=60, since=guard.started_at)
        _captures(settings, answered=1, fallback=True, n=40, since=guard.started_at)
        loop.advance()
        assert _production(loop) == 1
        (rolled,) = loop.ledger.guards(loop.name, states=("rolled-back",))
        assert rolled.verdict["error_rate"] == pytest.approx(0.4)
        last = loop.promoter.history(loop.name)[-2:]
        assert {t.action for t in last} == {"rollback", "demote"}
        assert all(t.actor == ACTOR for t in last)
        assert loop.registry.get(loop.name, new).stage == Stage.ARCHIVED


def test_a_drift_decision_starts_one_retraining_then_cooldown_and_manual_mode_only_notify(
    tmp_path: Path,
) -> None:
    received: list[str] = []
    settings = _settings(tmp_path / "home", "retrain_delay_hours = 24.0\ncooldown_minutes = 60.0\n")
    now = [datetime(2026, 2, 1, tzinfo=UTC)]
    with _loop(settings) as loop:
        loop.clock = lambda: now[0]
        loop._on_event = lambda e: received.append(e.kind)  # observe what it announces
        first = loop.on_decision("DRIFT", "air temperature moved")
        assert first is not None
        assert first.state == "waiting"  # the delay: labelled data of the new regime comes first
        again = loop.on_decision("DECAY", "roc_auc fell")
        assert again is not None
        assert again.state == "suppressed"
        assert f"retraining {first.id} is still under way" in again.reason
        assert loop.on_decision("OK", "fine") is None
        assert loop.on_decision("WARN", "a little off") is None
        loop.ledger.update_trigger(first.id, state="kept", pipeline_run="run-x")  # as if it had run
        now[0] += timedelta(minutes=30)
        cooled = loop.on_decision("DRIFT", "still drifting")
        assert cooled is not None
        assert cooled.state == "suppressed"
        assert "cooldown" in cooled.reason
        now[0] += timedelta(minutes=31)
        after = loop.on_decision("DRIFT", "still drifting")
        assert after is not None
        assert after.state == "waiting"  # the cooldown is over: a new incident may retrain
        loop.ledger.update_trigger(after.id, state="kept", pipeline_run="run-y")
        loop.settings = settings.model_copy(
            update={"schedule": settings.schedule.model_copy(update={"mode": "manual"})}
        )
        manual = loop.on_decision("DECAY", "roc_auc fell")
        assert manual is not None
        assert manual.state == "notified"
        assert "driftloop pipeline run" in manual.reason
        kinds = [t.state for t in loop.ledger.triggers(loop.name)]
    assert kinds == ["kept", "suppressed", "suppressed", "kept", "notified"]
    assert received == ["trigger"] * 5


def test_every_loop_event_is_posted_to_the_notification_webhook(tmp_path: Path) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:  # quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        settings = _settings(tmp_path / "home", f'mode = "manual"\nnotify_webhook = "{url}"\n')
        with _loop(settings) as loop:
            trigger = loop.on_decision("DRIFT", "air temperature moved")
            assert trigger is not None
            assert trigger.state == "notified"
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    assert received[0]["kind"] == "trigger"
    assert received[0]["model"] == "plant-failure"
    assert "manual mode" in str(received[0]["message"])


def test_a_dead_webhook_never_stops_the_loop(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path / "home", 'mode = "manual"\nnotify_webhook = "http://127.0.0.1:9/nothing"\n'
    )
    with _loop(settings) as loop:
        trigger = loop.on_decision("DECAY", "roc_auc fell")
    assert trigger is not None
    assert trigger.state == "notified"
