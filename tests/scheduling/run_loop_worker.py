"""One loop worker (a scheduler's loop jobs, without the timer) for the takeover tests.

``python -m tests.scheduling.run_loop_worker CONFIG END trigger [POINT]``: start a manual retraining on
the days up to END (an ISO date) and carry it to its end, as a scheduler's job would; with POINT, the
worker kills itself there (:func:`tests.registry.armed.arm_crash`). ``… CONFIG END advance AFTER``: wait
for a trigger newer than id AFTER, then advance the loop (as the scheduler's gates job does) until that
trigger has finished; exit 0.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from driftloop.core.triggers import PENDING
from driftloop.logs import configure_logging
from driftloop.scheduling.loop import Loop
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata
from tests.registry.armed import arm_crash

POLL_S = 0.2
DEADLINE_S = 600


def main(config: str, end: date, mode: str, extra: str = "") -> None:
    configure_logging("info")
    if mode == "trigger" and extra:
        arm_crash(extra)
    as_of = datetime.combine(end + timedelta(days=2), clock(), UTC)  # the window's labels have arrived
    settings = load_settings(Path(config))
    db = open_metadata(settings.database_url)
    loop = Loop(settings, db)
    if mode == "trigger":
        loop.trigger("manual", "takeover test", as_of=as_of, end_day=end)
        return
    after = int(extra or 0)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        mine = [t for t in loop.ledger.triggers(loop.name) if t.id > after]
        if mine and all(t.state not in PENDING for t in mine):
            return
        loop.advance(as_of=as_of, end_day=end)
        time.sleep(POLL_S)
    sys.exit(f"no trigger after {after} finished within {DEADLINE_S} s")


if __name__ == "__main__":
    main(sys.argv[1], date.fromisoformat(sys.argv[2]), *sys.argv[3:])
