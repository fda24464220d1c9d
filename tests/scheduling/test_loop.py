"""The closed loop with real parts: pipeline subprocesses, MLflow registry, promotion policy, captures.

One module-scoped plant: a simulated week and v1 put in production by the loop itself (no champion:
the first model goes straight through). The tests share it in any order: each one that trains uses a
seed of its own (its own cache key, so its own candidate, whatever ran before), judges against the
champion it finds (the ``champion`` fixture) and must leave that champion in production with nothing
in Staging and no trigger pending (checked when it ends).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from driftloop.capture.parquet import parquet_objects
from driftloop.core.models import Stage
from driftloop.core.triggers import ACTIVE, PENDING, TriggerState
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
        dataset="plant",
        start=START,
        days=(END - START).days + 1,
        rows_per_day=1500,
        machines=10,
        seed=3,
        label_delay=timedelta(hours=24),
    )
    simulate(request, store_for(settings))
    with _loop(settings) as loop:
        first = loop.trigger("manual", "the first model", as_of=AS_OF, end_day=END)
        assert first.state == TriggerState.PROMOTED, first.detail
        assert _production(loop) == 1
    return home


@pytest.fixture
def champion(home: Path) -> Iterator[int]:
    """The production version the test starts with, which it must leave in place."""
    with _loop(_settings(home)) as loop:
        version = _production(loop)
    assert version is not None
    yield version
    with _loop(_settings(home)) as loop:
        assert _production(loop) == version, "the test must leave the champion it found"
        assert loop.registry.by_alias(loop.name, "staging") is None
        assert loop.ledger.triggers(loop.name, states=PENDING) == []


def _retraining(seed: int, *, approval: bool = False) -> None:
    """Configure the next retraining (steps read the environment too): its own ``seed``; the offline
    comparison always passing (these tests are not about it); ``approval``: production needs one."""
    os.environ["DRIFTLOOP_TRAINING__SEED"] = str(seed)
    os.environ["DRIFTLOOP_POLICY__COMPARISON_MARGIN"] = "1"
    os.environ["DRIFTLOOP_POLICY__REQUIRE_APPROVAL_FOR"] = '["production"]' if approval else "[]"


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


def _assert_champion_kept(loop: Loop, trigger: Trigger, champion: int) -> None:
    assert _production(loop) == champion
    assert loop.registry.by_alias(loop.name, "staging") is None
    if trigger.candidate_version is not None:
        assert loop.registry.get(loop.name, trigger.candidate_version).stage == Stage.NONE


def test_a_broken_model_factory_never_reaches_production(home: Path, champion: int) -> None:
    os.environ["DRIFTLOOP_TRAINING__MODEL_FACTORY"] = "tests.scheduling.bad_factories:broken"  # steps too
    settings = _settings(home)
    with _loop(settings) as loop:
        trigger = loop.trigger("manual", "retrain with a broken factory", as_of=AS_OF, end_day=END)
        assert trigger.state == TriggerState.FAILED
        assert trigger.pipeline_run is not None
        assert "pipeline failed" in trigger.detail["why"]
        assert trigger.candidate_version is None
        _assert_champion_kept(loop, trigger, champion)


def test_a_useless_model_is_refused_at_staging_and_the_champion_stays(home: Path, champion: int) -> None:
    os.environ["DRIFTLOOP_TRAINING__MODEL_FACTORY"] = "tests.scheduling.bad_factories:blind"
    settings = _settings(home)
    with _loop(settings) as loop:
        trigger = loop.trigger("manual", "retrain with a blind model", as_of=AS_OF, end_day=END)
        assert trigger.state == TriggerState.KEPT
        assert trigger.candidate_version is not None
        assert "metric_floors" in trigger.detail["why"]
        _assert_champion_kept(loop, trigger, champion)
        refused = [
            t for t in loop.promoter.history(loop.name, trigger.candidate_version) if t.outcome == "refused"
        ]
        assert refused, "the refusal is in the audit history"


def test_corrupt_data_stops_the_retraining_as_a_data_incident(home: Path, champion: int) -> None:
    settings = _settings(home)
    store = store_for(settings)
    day = END + timedelta(days=1)
    request = SimulationRequest(
        dataset="plant",
        start=day,
        days=2,
        rows_per_day=1500,
        machines=10,
        seed=4,
        label_delay=timedelta(hours=24),
        drifts=(parse_drift(f"corrupt:start={day},severity=0.6", default_start=day),),
    )
    simulate(request, store)
    try:
        with _loop(settings) as loop:
            trigger = loop.trigger(
                "manual",
                "retrain on corrupt data",
                as_of=AS_OF + timedelta(days=3),
                end_day=day + timedelta(days=1),
            )
            assert trigger.state == TriggerState.FAILED
            assert "validate" in trigger.detail["why"]
            _assert_champion_kept(loop, trigger, champion)
    finally:
        for kind in ("raw", "labels"):
            for k in range(4):
                for info in list(store.list(f"{kind}/plant/date={day + timedelta(days=k)}/")):
                    store.delete(info.key)


def _captures(settings: Settings, *, answered: int, fallback: bool, n: int, since: datetime) -> None:
    """``n`` captured predictions answered by version ``answered``, just after ``since``."""
    stamps = [(since + timedelta(microseconds=1 + i)).isoformat(timespec="microseconds") for i in range(n)]
    records = [
        {
            "kind": "prediction",
            "prediction_id": f"g{fallback:d}-{i:05d}",
            "ts": stamps[i],
            "model_name": settings.registry.model_name,
            "model_version": answered,
            "inputs": {},
            "outputs": {},
            "score": 0.1,
            "latency_ms": 1.0,
            "fallback": fallback,
            "endpoint": "/v1/predict",
        }
        for i in range(n)
    ]
    store = store_for(settings)
    for key, data in parquet_objects(records, f"test-{fallback:d}-{since.timestamp():.0f}"):
        store.write_bytes(key, data)


def test_the_guard_rolls_back_a_promoted_version_that_keeps_failing_live(home: Path, champion: int) -> None:
    _retraining(seed=1)
    settings = _settings(home)
    with _loop(settings) as loop:
        trigger = loop.trigger("manual", "a good retraining", as_of=AS_OF, end_day=END)
        assert trigger.state == TriggerState.PROMOTED, trigger.detail
        new = trigger.candidate_version
        assert _production(loop) == new
        (guard,) = loop.ledger.guards(loop.name, states=("watching",))
        assert (guard.version, guard.previous_version, guard.trigger_id) == (new, champion, trigger.id)
        loop.advance()  # no live traffic yet: nothing to judge, the guard keeps watching
        assert loop.ledger.guards(loop.name, states=("watching",))
        # Live: the new version raises on 40 % of requests, which the previous version answers (fallback).
        _captures(settings, answered=new, fallback=False, n=60, since=guard.started_at)
        _captures(settings, answered=champion, fallback=True, n=40, since=guard.started_at)
        loop.advance()
        assert _production(loop) == champion
        (rolled,) = [g for g in loop.ledger.guards(loop.name, states=("rolled-back",)) if g.id == guard.id]
        assert rolled.verdict["error_rate"] == pytest.approx(0.4)
        last = loop.promoter.history(loop.name)[-2:]
        assert {t.action for t in last} == {"rollback", "demote"}
        assert all(t.actor == ACTOR for t in last)
        assert loop.registry.get(loop.name, new).stage == Stage.ARCHIVED


def _approval_wanted(loop: Loop, trigger: Trigger, champion: int) -> int:
    """``trigger`` passed every gate and waits for an approval, its candidate in Staging, the champion
    still serving and the one-retraining slot free; its candidate."""
    assert trigger.state == TriggerState.AWAITING_APPROVAL, trigger.detail
    version = trigger.candidate_version
    assert version is not None
    assert f"driftloop approve {loop.name} {version} --to production" in trigger.detail["waiting"]
    assert _production(loop) == champion
    staged = loop.registry.by_alias(loop.name, "staging")
    assert staged is not None
    assert staged.version == version
    assert loop.ledger.triggers(loop.name, states=ACTIVE) == []
    return version


def test_without_shadow_a_candidate_awaits_approval_and_is_promoted_once_approved(
    home: Path, champion: int
) -> None:
    _retraining(seed=2, approval=True)
    with _loop(_settings(home)) as loop:
        trigger = loop.trigger("manual", "a retraining a person signs off", as_of=AS_OF, end_day=END)
        version = _approval_wanted(loop, trigger, champion)
        recorded = len(loop.promoter.history(loop.name, version))
        assert loop.advance() == []  # not approved yet: it waits, and the audit is not filled with refusals
        assert len(loop.promoter.history(loop.name, version)) == recorded
        loop.promoter.approve(loop.name, version, Stage.PRODUCTION, actor="alice", comment="looks right")
        (moved,) = loop.advance()
        assert (moved.id, moved.state) == (trigger.id, TriggerState.PROMOTED)
        assert _production(loop) == version
        promotions = [t for t in loop.promoter.history(loop.name, version) if t.to_stage == Stage.PRODUCTION]
        assert [(t.outcome, t.actor) for t in promotions] == [("refused", ACTOR), ("done", ACTOR)]
        (guard,) = [
            g for g in loop.ledger.guards(loop.name, states=("watching",)) if g.trigger_id == trigger.id
        ]
        assert (guard.version, guard.previous_version) == (version, champion)
        loop.promoter.rollback(loop.name, actor="test", comment="the next test's champion")


def test_a_candidate_awaiting_approval_is_withdrawn_when_superseded_or_rejected(
    home: Path, champion: int
) -> None:
    _retraining(seed=3, approval=True)
    with _loop(_settings(home)) as loop:
        first = loop.trigger("manual", "a retraining nobody signs off", as_of=AS_OF, end_day=END)
        older = _approval_wanted(loop, first, champion)
    _retraining(seed=4, approval=True)
    with _loop(_settings(home)) as loop:
        # The slot is free: a newer retraining starts, and its candidate takes Staging.
        second = loop.trigger("manual", "a newer retraining", as_of=AS_OF, end_day=END)
        newer = _approval_wanted(loop, second, champion)
        assert newer != older
        (moved,) = loop.advance()
        assert (moved.id, moved.state) == (first.id, TriggerState.KEPT)
        assert "left Staging while awaiting approval" in moved.detail["why"]
        assert loop.registry.get(loop.name, older).stage == Stage.NONE
        # A person rejects the newer one (takes it out of Staging): its trigger ends too, the champion stays.
        loop.promoter.withdraw(loop.name, newer, actor="bob", reasons=["rejected: not this week"])
        (moved,) = loop.advance()
        assert (moved.id, moved.state) == (second.id, TriggerState.KEPT)
        assert loop.registry.get(loop.name, newer).stage == Stage.NONE
        assert _production(loop) == champion


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
        assert first.state == TriggerState.WAITING  # the delay: labelled data of the new regime comes first
        again = loop.on_decision("DECAY", "roc_auc fell")
        assert again is not None
        assert again.state == TriggerState.SUPPRESSED
        assert f"retraining {first.id} is still under way" in again.reason
        assert loop.on_decision("OK", "fine") is None
        assert loop.on_decision("WARN", "a little off") is None
        _as_if_run(loop, first, "run-x")
        now[0] += timedelta(minutes=30)
        cooled = loop.on_decision("DRIFT", "still drifting")
        assert cooled is not None
        assert cooled.state == TriggerState.SUPPRESSED
        assert "cooldown" in cooled.reason
        now[0] += timedelta(minutes=31)
        after = loop.on_decision("DRIFT", "still drifting")
        assert after is not None
        assert after.state == TriggerState.WAITING  # the cooldown is over: a new incident may retrain
        _as_if_run(loop, after, "run-y")
        loop.settings = settings.model_copy(
            update={"schedule": settings.schedule.model_copy(update={"mode": "manual"})}
        )
        manual = loop.on_decision("DECAY", "roc_auc fell")
        assert manual is not None
        assert manual.state == TriggerState.NOTIFIED
        assert "driftloop pipeline run" in manual.reason
        kinds = [t.state for t in loop.ledger.triggers(loop.name)]
    assert kinds == ["kept", "suppressed", "suppressed", "kept", "notified"]
    assert received == ["trigger"] * 5


def _as_if_run(loop: Loop, trigger: Trigger, run: str) -> None:
    loop.ledger.update_trigger(trigger.id, state=TriggerState.TRAINING, pipeline_run=run)
    loop.ledger.update_trigger(trigger.id, state=TriggerState.KEPT)


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
            assert trigger.state == TriggerState.NOTIFIED
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
    assert trigger.state == TriggerState.NOTIFIED
