"""One loop worker (a scheduler's loop jobs, without the timer) for the takeover tests.

``python -m tests.scheduling.run_loop_worker CONFIG END trigger``: start a manual retraining on the
days up to END (an ISO date) and carry it to its end, as a scheduler's job would. ``… CONFIG END advance
AFTER``: wait for a trigger newer than id AFTER, then advance the loop (as the scheduler's gates job does)
until that trigger has finished; exit 0.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from driftloop.logs import configure_logging
from driftloop.scheduling.ledger import ACTIVE
from driftloop.scheduling.loop import Loop
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata

POLL_S = 0.2
DEADLINE_S = 600


def main(config: str, end: date, mode: str, after: int = 0) -> None:
    configure_logging("info")
    as_of = datetime.combine(end + timedelta(days=2), clock(), UTC)  # the window's labels have arrived
    settings = load_settings(Path(config))
    db = open_metadata(settings.database_url)
    loop = Loop(settings, db)
    if mode == "trigger":
        loop.trigger("manual", "takeover test", as_of=as_of, end_day=end)
        return
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        mine = [t for t in loop.ledger.triggers(loop.name) if t.id > after]
        if mine and all(t.state not in ACTIVE for t in mine):
            return
        loop.advance(as_of=as_of, end_day=end)
        time.sleep(POLL_S)
    sys.exit(f"no trigger after {after} finished within {DEADLINE_S} s")


if __name__ == "__main__":
    main(
        sys.argv[1],
        date.fromisoformat(sys.argv[2]),
        sys.argv[3],
        int(sys.argv[4]) if len(sys.argv) > 4 else 0,
    )
