"""The scheduler's jobs: thin entry points that reload the configuration and run one step of the loop.

APScheduler stores each job as a textual reference to one of these functions plus its argument (the
configuration file, or None), so they must stay importable under these names. Each builds what it
needs, does one thing, and closes what it opened; an exception is recorded by the scheduler as the
fire's failure and the next fire runs as usual.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.core.durations import parse_duration
from driftloop.data.ingest import list_partitions
from driftloop.errors import ConflictError, DataError, NotFoundError
from driftloop.scheduling.loop import Loop
from driftloop.settings import load_settings
from driftloop.simulate import SimulationRequest, simulate
from driftloop.storage import join_key, store_for
from driftloop.storage.metadata import open_metadata

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["advance_gates", "monitor_pass", "plant_clock_tick", "scheduled_retrain"]

log = logging.getLogger(__name__)


@contextmanager
def _loop(config: str | None) -> Iterator[Loop]:
    settings = load_settings(Path(config) if config else None)
    db = open_metadata(settings.database_url, echo=settings.database.echo)
    try:
        yield Loop(settings, db)
    finally:
        db.dispose()


def monitor_pass(config: str | None) -> None:
    """A monitoring pass over ``monitoring.window`` ending now, then the trigger policy on its decision
    (automated mode may retrain here), then the gates and the guard."""
    with _loop(config) as loop:
        end = datetime.now(UTC)
        try:
            result = loop.monitor(start=end - parse_duration(loop.settings.monitoring.window), end=end)
        except (DataError, NotFoundError) as exc:  # no traffic or no production model yet: nothing to judge
            log.info("monitoring pass skipped: %s", exc.headline)
            return
        log.info("monitoring pass: %s", result.assessment.decision)
        loop.advance()


def advance_gates(config: str | None) -> None:
    """Start retrainings whose delay is over, judge candidates in shadow, watch the rollback guards."""
    with _loop(config) as loop:
        moved = loop.advance()
        if moved:
            log.info("loop: %s", ", ".join(f"trigger {t.id} → {t.state}" for t in moved))


def scheduled_retrain(config: str | None) -> None:
    """The cron retraining (``schedule.retrain_cron``): through the same gates as a triggered one."""
    with _loop(config) as loop:
        try:
            trigger = loop.trigger(
                "schedule", f"scheduled retraining ({loop.settings.schedule.retrain_cron})"
            )
        except ConflictError as exc:  # a triggered retraining is under way: it is this period's retraining
            log.info("scheduled retraining skipped: %s", exc.headline)
            return
        log.info("scheduled retraining: trigger %s → %s", trigger.id, trigger.state)


def plant_clock_tick(config: str | None) -> None:
    """The demo plant: simulate the day after the newest raw partition (readings and their labels)."""
    settings = load_settings(Path(config) if config else None)
    store = store_for(settings)
    dataset = settings.data.dataset
    days = [p.day for p in list_partitions(store, join_key("raw", dataset), None, None)]
    day = max(days) + timedelta(days=1) if days else datetime.now(UTC).date()
    cfg = settings.simulate
    request = SimulationRequest(
        dataset=dataset,
        start=day,
        days=1,
        rows_per_day=cfg.rows_per_day,
        machines=cfg.machines,
        seed=cfg.seed + day.toordinal(),
        label_delay=timedelta(hours=cfg.label_delay_hours),
    )
    summary = simulate(request, store)
    log.info("plant clock: simulated %s (%s rows)", day, summary.rows)
