"""Scheduler fixtures: a migrated metadata database (SQLite and PostgreSQL) and a way to wait."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import pytest

from driftloop.scheduling.scheduler import start_scheduler
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from apscheduler.schedulers.background import BackgroundScheduler

    from driftloop.scheduling.scheduler import JobSpec
    from driftloop.storage.metadata import Database


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_metadata(db_url)
    yield database
    database.dispose()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def running(db: Database, specs: Sequence[JobSpec]) -> Iterator[BackgroundScheduler]:
    """A started scheduler on ``db`` running ``specs``, shut down (waiting for its fires) on exit."""
    scheduler, _ = start_scheduler(db, specs)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=True)
