"""One scheduler process for the two-schedulers test: ``python -m tests.scheduling.run_scheduler``.

Arguments: the database URL, the file the job appends to, the interval in seconds, and a status file. It
prints ``ready`` once it has started and synced; after every fire it submitted (won or lost) it rewrites
the status file with its holder and how many claims it won and lost; it stops when its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.triggers.interval import IntervalTrigger

from driftloop.scheduling.scheduler import JobSpec, start_scheduler
from driftloop.storage.metadata import open_metadata


def main(url: str, out: str, interval_s: float, status: Path) -> None:
    db = open_metadata(url)
    trigger = IntervalTrigger(seconds=interval_s, timezone=UTC)
    scheduler, _ = start_scheduler(
        db, [JobSpec("tick", "tests.scheduling.probe_jobs:record", trigger, (out,))]
    )
    executor = scheduler._lookup_executor("default")

    def report(_event: Any = None) -> None:
        counts = {"holder": executor.holder, "claimed": executor.claimed, "lost": executor.lost}
        status.with_suffix(".tmp").write_text(json.dumps(counts))
        os.replace(status.with_suffix(".tmp"), status)  # the test never reads a half-written file

    report()
    scheduler.add_listener(report, EVENT_JOB_SUBMITTED)
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    scheduler.shutdown(wait=True)
    db.dispose()
    report()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]))
