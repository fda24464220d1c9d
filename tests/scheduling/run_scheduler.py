"""One scheduler process for the two-schedulers test: ``python -m tests.scheduling.run_scheduler``.

Arguments: the database URL, the file the job appends to, and the interval in seconds. It prints
``ready`` once it has started and synced, runs until its stdin closes, then prints one JSON line: its
holder and how many claims it won and lost.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC

from apscheduler.triggers.interval import IntervalTrigger

from driftloop.scheduling.scheduler import JobSpec, start_scheduler
from driftloop.storage.metadata import open_metadata


def main(url: str, out: str, interval_s: float) -> None:
    db = open_metadata(url)
    trigger = IntervalTrigger(seconds=interval_s, timezone=UTC)
    scheduler, _ = start_scheduler(
        db, [JobSpec("tick", "tests.scheduling.probe_jobs:record", trigger, (out,))]
    )
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    executor = scheduler._lookup_executor("default")
    scheduler.shutdown(wait=True)
    db.dispose()
    print(json.dumps({"holder": executor.holder, "claimed": executor.claimed, "lost": executor.lost}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
