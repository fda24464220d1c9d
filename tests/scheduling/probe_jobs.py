"""Job functions for the scheduler tests, referenced textually as the real jobs are.

Each appends one line ``<pid> <unix time>`` to a file: the file is the ground truth of how many times a
job really ran, independent of the claim rows. The four names of ``driftloop.scheduling.jobs`` stand in
for the real jobs in CLI tests; they append to ``fires.log`` next to the configuration file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FIRES_LOG = "fires.log"


def record(path: str) -> None:
    """Append this run's line to ``path`` (one write: lines from two processes never interleave)."""
    with Path(path).open("a") as out:
        out.write(f"{os.getpid()} {time.time():.6f}\n")


def fail(path: str) -> None:
    """Record the run, then fail the way a broken job does."""
    record(path)
    raise RuntimeError("boom: the plant is on fire")


def lines(path: Path) -> list[tuple[int, float]]:
    """The runs recorded in ``path``: (pid, unix time), oldest first."""
    if not path.exists():
        return []
    runs = [line.split() for line in path.read_text().splitlines() if line]
    return [(int(pid), float(at)) for pid, at in runs]


def _beside_config(config: str | None) -> None:
    record(str(Path(config).parent / FIRES_LOG if config else Path.cwd() / FIRES_LOG))


# Stand-ins for driftloop.scheduling.jobs (same signature: the configuration file path or None).
monitor_pass = advance_gates = scheduled_retrain = plant_clock_tick = _beside_config
