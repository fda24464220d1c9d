"""What a simulation is asked to do, what it reports back, and the columns it writes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from driftloop.errors import UsageError
from driftloop.simulate._scenarios import DriftSpec
from driftloop.simulate.plant import FAILURE_MODES, RAW_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "FAILURE_MODES",
    "LABEL_COLUMNS",
    "MAX_MACHINES",
    "MAX_ROWS_PER_DAY",
    "RAW_COLUMNS",
    "SimulationRequest",
    "SimulationSummary",
]

LABEL_COLUMNS = ("record_id", "timestamp", "available_at", *FAILURE_MODES)

# A day is built in memory (about 200 bytes a row at peak); these bounds turn a typo into a clear error
# instead of an out-of-memory kill.
MAX_ROWS_PER_DAY = 10_000_000
MAX_MACHINES = 1_000_000
_DATASET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class SimulationRequest:
    """A simulation: ``days`` days from ``start``, ``rows_per_day`` processes a day over the fleet.

    The same request always produces byte-identical output. Labels become available ``label_delay``
    after each process. Construction validates every field and raises :class:`UsageError` with a
    one-line headline; drift start dates may lie anywhere (before, inside or after the simulated days).
    """

    dataset: str
    start: date
    days: int
    rows_per_day: int
    machines: int
    seed: int
    label_delay: timedelta
    drifts: tuple[DriftSpec, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not _DATASET.fullmatch(self.dataset):
            raise UsageError(
                f"invalid dataset name {self.dataset!r}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or digit"
            )
        if isinstance(self.start, datetime) or not isinstance(self.start, date):
            raise UsageError(f"invalid start {self.start!r}: expected a date like 2026-01-31")
        _check_count("days", self.days, 1)
        _check_count("rows_per_day", self.rows_per_day, 1, MAX_ROWS_PER_DAY)
        _check_count("machines", self.machines, 1, MAX_MACHINES)
        _check_count("seed", self.seed, 0)
        if not isinstance(self.label_delay, timedelta) or self.label_delay < timedelta(0):
            raise UsageError(f"invalid label_delay {self.label_delay!r}: expected a duration ≥ 0")
        try:
            _ = self.start + timedelta(days=self.days) + self.label_delay
        except OverflowError:
            raise UsageError(
                f"invalid days {self.days}: the simulation (plus the label delay) would end after year 9999"
            ) from None
        drifts = tuple(self.drifts)
        for spec in drifts:
            if not isinstance(spec, DriftSpec):
                raise UsageError(f"invalid drift {spec!r}: expected a DriftSpec")
        object.__setattr__(self, "drifts", drifts)

    @property
    def end(self) -> date:
        """The last simulated day."""
        return self.start + timedelta(days=self.days - 1)


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote.

    ``failures`` counts rows per mode (``machine_failure`` is any mode); ``raw_keys`` and
    ``label_keys`` are the store keys written, in date order; ``drifts`` are the scenarios applied with
    every option spelled out; ``quarantine_hint`` counts, per data-quality scenario requested
    (``missing``, ``corrupt``), the rows it damaged — empty when none was requested.
    """

    rows: int
    failures: Mapping[str, int]
    raw_keys: tuple[str, ...]
    label_keys: tuple[str, ...]
    drifts: tuple[DriftSpec, ...]
    quarantine_hint: Mapping[str, int]

    def failure_rate(self, mode: str) -> float:
        """Share of rows with failure ``mode`` (one of ``FAILURE_MODES``); UsageError for others."""
        if mode not in self.failures:
            raise UsageError(f"unknown failure mode {mode!r}; valid modes: {', '.join(FAILURE_MODES)}")
        return self.failures[mode] / self.rows if self.rows else 0.0


def _check_count(name: str, value: int, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"invalid {name} {value!r}: expected a whole number")
    if value < low:
        raise UsageError(f"invalid {name} {value}: must be at least {low}")
    if high is not None and value > high:
        raise UsageError(f"invalid {name} {value}: must be at most {high:,}")
