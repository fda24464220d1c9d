"""The trigger lease (Ledger.claim/renew/release): one holder at a time, a dead or expired holder taken
over, every change by a worker that lost its lease refused."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from driftloop.core.holders import new_holder
from driftloop.errors import ConflictError
from driftloop.scheduling.ledger import Ledger

if TYPE_CHECKING:
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
    trigger = ledger.add_trigger(model="m", kind="drift", reason="r", mode="automated", state="waiting")
    me, other = new_holder(), new_holder()  # two live workers (both name this live process)
    held = ledger.claim(trigger, me, LEASE)
    assert held is not None
    assert held.holder == me
    assert held.lease_expires_at is not None
    assert held.lease_expires_at > datetime.now(UTC)
    assert ledger.claim(held, other, LEASE) is None  # alive and not expired
    assert ledger.claim(trigger, other, LEASE) is None  # a stale read loses the compare-and-set too
    with pytest.raises(ConflictError, match="taken over"):
        ledger.update_trigger(trigger.id, holder=other, state="training")
    assert ledger.update_trigger(trigger.id, holder=me, state="training").state == "training"
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
        model="m", kind="manual", reason="r", mode="automated", state="training", holder=dead, lease=LEASE
    )
    assert not trigger.held_by_other(new_holder(), datetime.now(UTC))  # its pid is gone: at once
    me = new_holder()
    taken = ledger.claim(trigger, me, LEASE)
    assert taken is not None
    assert taken.holder == me
    with pytest.raises(ConflictError):  # the old holder (were it only paused) can change nothing now
        ledger.update_trigger(trigger.id, holder=dead, state="failed")

    remote = "another-host:123:abcd"  # liveness unknowable from here: only its expiry counts
    elsewhere = ledger.add_trigger(
        model="m", kind="manual", reason="r", mode="automated", state="training", holder=remote, lease=LEASE
    )
    assert ledger.claim(elsewhere, me, LEASE) is None
    expired = ledger.add_trigger(
        model="m",
        kind="manual",
        reason="r",
        mode="automated",
        state="training",
        holder=remote,
        lease=timedelta(seconds=-1),
    )
    assert ledger.claim(expired, me, LEASE) is not None
