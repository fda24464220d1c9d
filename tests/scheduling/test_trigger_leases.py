"""The trigger lease (Ledger.claim/renew/release): one holder at a time, a dead or expired holder taken
over, every change by a worker that lost its lease refused."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from driftloop.core.triggers import IllegalTransitionError, TriggerState
from driftloop.errors import ConflictError
from driftloop.pipeline import records
from driftloop.runtime.holders import new_holder
from driftloop.scheduling.ledger import Ledger
from driftloop.scheduling.loop import Loop
from driftloop.settings import Settings
from tests.conftest import mlflow_state_kept

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage.metadata import Database

LEASE = timedelta(seconds=60)


def _dead_holder() -> str:
    """A holder named by a process of this host that has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return new_holder().replace(new_holder().split(":")[1], proc.stdout.strip(), 1)


def test_one_worker_holds_a_trigger_and_the_other_is_refused(db: Database) -> None:
    ledger = Ledger(db)
    trigger = ledger.add_trigger(
        model="m", kind="drift", reason="r", mode="automated", state=TriggerState.WAITING
    )
    me, other = new_holder(), new_holder()  # two live workers (both name this live process)
    held = ledger.claim(trigger, me, LEASE)
    assert held is not None
    assert held.holder == me
    assert held.lease_expires_at is not None
    assert held.lease_expires_at > datetime.now(UTC)
    assert ledger.claim(held, other, LEASE) is None  # alive and not expired
    assert ledger.claim(trigger, other, LEASE) is None  # a stale read loses the compare-and-set too
    with pytest.raises(ConflictError, match="taken over"):
        ledger.update_trigger(trigger.id, holder=other, state=TriggerState.TRAINING)
    assert (
        ledger.update_trigger(trigger.id, holder=me, state=TriggerState.TRAINING).state
        == TriggerState.TRAINING
    )
    assert ledger.renew(trigger.id, me, LEASE)
    assert not ledger.renew(trigger.id, other, LEASE)
    ledger.release(trigger.id, other)  # not the holder: nothing happens
    assert ledger.triggers("m")[0].holder == me
    ledger.release(trigger.id, me)
    assert ledger.triggers("m")[0].holder is None
    assert ledger.claim(ledger.triggers("m")[0], other, LEASE) is not None


def test_a_dead_or_expired_holder_is_taken_over_and_then_refused(db: Database) -> None:
    ledger = Ledger(db)
    dead = _dead_holder()
    trigger = ledger.add_trigger(
        model="m",
        kind="manual",
        reason="r",
        mode="automated",
        state=TriggerState.TRAINING,
        holder=dead,
        lease=LEASE,
    )
    assert not trigger.held_by_other(new_holder(), datetime.now(UTC))  # its pid is gone: at once
    me = new_holder()
    taken = ledger.claim(trigger, me, LEASE)
    assert taken is not None
    assert taken.holder == me
    with pytest.raises(ConflictError):  # the old holder (were it only paused) can change nothing now
        ledger.update_trigger(trigger.id, holder=dead, state=TriggerState.FAILED)

    remote = "another-host:123:abcd"  # liveness unknowable from here: only its expiry counts
    elsewhere = ledger.add_trigger(
        model="m2",
        kind="manual",
        reason="r",
        mode="automated",
        state=TriggerState.TRAINING,
        holder=remote,
        lease=LEASE,
    )
    assert ledger.claim(elsewhere, me, LEASE) is None
    expired = ledger.add_trigger(
        model="m3",
        kind="manual",
        reason="r",
        mode="automated",
        state=TriggerState.TRAINING,
        holder=remote,
        lease=timedelta(seconds=-1),
    )
    assert ledger.claim(expired, me, LEASE) is not None


def test_the_database_allows_one_retraining_under_way_per_model(db: Database) -> None:
    ledger = Ledger(db)
    first = ledger.add_trigger(
        model="m", kind="drift", reason="r", mode="automated", state=TriggerState.TRAINING
    )
    with pytest.raises(ConflictError):
        ledger.add_trigger(model="m", kind="drift", reason="r", mode="automated", state=TriggerState.WAITING)
    ledger.add_trigger(model="other", kind="drift", reason="r", mode="automated", state=TriggerState.WAITING)
    ledger.add_trigger(model="m", kind="drift", reason="r", mode="automated", state=TriggerState.SUPPRESSED)
    ledger.update_trigger(first.id, state=TriggerState.KEPT)
    second = ledger.add_trigger(
        model="m", kind="drift", reason="r", mode="automated", state=TriggerState.TRAINING
    )
    # A candidate awaiting approval does not hold the slot (decision 0052): a newer retraining may start.
    ledger.update_trigger(second.id, state=TriggerState.AWAITING_APPROVAL)
    ledger.add_trigger(model="m", kind="drift", reason="r", mode="automated", state=TriggerState.WAITING)


def test_a_trigger_moves_only_where_its_state_table_leads(db: Database) -> None:
    ledger = Ledger(db)
    trigger = ledger.add_trigger(
        model="m", kind="drift", reason="r", mode="automated", state=TriggerState.WAITING
    )
    with pytest.raises(IllegalTransitionError, match="from waiting to promoted"):
        ledger.update_trigger(trigger.id, state=TriggerState.PROMOTED, candidate_version=3)
    assert ledger.triggers("m")[0].candidate_version is None  # refused as a whole
    for state in (
        TriggerState.TRAINING,
        TriggerState.TRAINING,
        TriggerState.AWAITING_APPROVAL,
        TriggerState.KEPT,
    ):
        assert ledger.update_trigger(trigger.id, state=state).state == state  # staying put is no move
    for state in TriggerState:  # an outcome is final
        if state != TriggerState.KEPT:
            with pytest.raises(IllegalTransitionError):
                ledger.update_trigger(trigger.id, state=state)
    with pytest.raises(IllegalTransitionError, match="recorded as one of"):  # nothing is born in shadow
        ledger.add_trigger(model="n", kind="drift", reason="r", mode="automated", state=TriggerState.SHADOW)
    assert [t.state for t in ledger.triggers("m")] == [TriggerState.KEPT]
    assert ledger.triggers("n") == []


def test_a_second_retraining_started_at_the_same_moment_is_recorded_suppressed(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mlflow_state_kept():
        loop = Loop(Settings(home=tmp_path), db)
        running = loop.ledger.add_trigger(
            model=loop.name, kind="drift", reason="r", mode="automated", state=TriggerState.TRAINING
        )
        with pytest.raises(ConflictError, match=f"retraining {running.id} .* is under way"):
            loop.trigger("manual", "someone asks")  # one at a time, even when asked
        # A worker that read "nothing under way" just before the other inserted its trigger:
        monkeypatch.setattr(loop.ledger, "triggers", lambda *_a, **_k: [])
        raced = loop.on_decision("DRIFT", "drift seen")
    assert raced is not None
    assert raced.state == TriggerState.SUPPRESSED
    assert "another retraining started at the same moment" in raced.reason


def test_resuming_by_hand_a_run_a_live_scheduler_works_on_is_refused(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(db)
    run_id = records.create_run(db, "training", {"dataset": "plant"}, ["ingest"], trigger="drift:1")
    trigger = ledger.add_trigger(
        model="plant-failure",
        kind="drift",
        reason="r",
        mode="automated",
        state=TriggerState.TRAINING,
        holder=new_holder(),
        lease=LEASE,  # this live test process: a scheduler at work
    )
    assert trigger.id == 1
    ledger.update_trigger(trigger.id, pipeline_run=run_id)
    env = {**os.environ, "DRIFTLOOP_HOME": str(tmp_path), "DRIFTLOOP_DATABASE__URL": db_url}
    done = subprocess.run(
        [sys.executable, "-m", "driftloop", "pipeline", "run", "--resume", run_id],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"run {run_id} is the retraining of trigger 1 (drift), which" in done.stderr
    assert "the loop resumes it itself" in done.stderr
    assert records.get_run(db, run_id).status == "pending"  # nothing ran
