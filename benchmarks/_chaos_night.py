"""One night of the chaos story in its own process (so a fault can ``kill -9`` it): a monitoring pass
over the day's traffic, then the loop's next moves, on the story's simulated clock.

    python benchmarks/_chaos_night.py NOW START END DAY

NOW is the simulated instant (the night after DAY), START/END the wall-clock window of the day's
captured traffic. Every loop event is printed as one JSON line; the configuration comes from the
environment the benchmark set up.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime

from driftloop.errors import DriftloopError
from driftloop.logs import configure_logging
from driftloop.scheduling.loop import Loop, LoopEvent
from driftloop.settings import load_settings
from driftloop.storage.metadata import open_metadata


def main(now: datetime, start: datetime, end: datetime, day: date) -> None:
    configure_logging("warning")
    settings = load_settings(None)
    db = open_metadata(settings.database_url)

    def say(event: LoopEvent) -> None:
        print(
            json.dumps({"kind": event.kind, "message": event.message, "version": event.version}), flush=True
        )

    try:
        loop = Loop(settings, db, clock=lambda: now, on_event=say)
        try:
            decision = loop.monitor(start=start, end=end, as_of=now, end_day=day).assessment.decision
        except DriftloopError as exc:
            decision = f"monitoring failed: {exc.headline}"
        print(json.dumps({"kind": "decision", "message": decision, "version": None}), flush=True)
        loop.advance(as_of=now, end_day=day)
    finally:
        db.dispose()


if __name__ == "__main__":
    when = [datetime.fromisoformat(text) for text in sys.argv[1:4]]
    main(when[0], when[1], when[2], date.fromisoformat(sys.argv[4]))
