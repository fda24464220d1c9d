"""Scheduler fixtures: a migrated metadata database (SQLite and PostgreSQL) and a way to wait."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from driftloop.scheduling.scheduler import start_scheduler
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from apscheduler.schedulers.background import BackgroundScheduler

    from driftloop.scheduling.scheduler import JobSpec
    from driftloop.storage.metadata import Database


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_metadata(db_url)
    yield database
    database.dispose()


@contextlib.contextmanager
def running(db: Database, specs: Sequence[JobSpec]) -> Iterator[BackgroundScheduler]:
    """A started scheduler on ``db`` running ``specs``, shut down (waiting for its fires) on exit."""
    scheduler, _ = start_scheduler(db, specs)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=True)
