"""Independent random streams, one per (day, concern, occurrence).

Every random draw of the simulator comes from a stream derived only from ``(seed, day index, concern,
occurrence)``. Two properties follow and the tests rely on them:

* the first *k* days of a longer run are byte-identical to a *k*-day run (no stream depends on how many
  days follow);
* adding a drift scenario never shifts another concern's draws, so the columns a scenario does not touch
  stay byte-identical.

Streams are reproducible for a given numpy version; numpy does not promise that ``Generator`` methods
return the same values across releases, so byte-identity holds within one environment.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["Concern", "stream"]


class Concern(IntEnum):
    """What a stream is used for. Values are part of the output's identity: never renumber them."""

    INIT = 0  # plant state before the first day (climate, mounted tools)
    INPUTS = 1  # timestamps, machine assignment, product variant, torque, speed noise
    CLIMATE = 2  # air temperature and process-temperature noise on the climate grid
    TOOLS = 3  # end of life and fail/replace draw of each newly mounted tool
    FAILURES = 4  # random failures (RNF)
    # Drift scenarios use SCENARIO_BASE + their fixed code (see _scenarios.SCENARIO_CODES).
    SCENARIO_BASE = 100


def stream(seed: int, day: int, concern: int, occurrence: int = 0) -> np.random.Generator:
    """The generator for one concern on one day (``occurrence`` separates repeated scenarios)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(day, int(concern), occurrence))
    return np.random.Generator(np.random.PCG64(sequence))
