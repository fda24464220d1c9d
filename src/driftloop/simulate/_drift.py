"""The effects of drift scenarios on one day: pure functions over numpy arrays.

Scenarios act at three stages, which is what keeps each one from touching more than it claims:

1. the *world* (``ambient``, ``mix-shift``, ``concept``): the physical plant changes, so failures follow;
2. the *measurement* (``sensor-offset``, ``sensor-noise``): readings change, the true values that decide
   failures do not;
3. the *record* (``missing``, ``corrupt``): fields of the written row are blanked or garbled; labels
   are unaffected.

A scenario is active on days on or after its ``start``; each draws from its own random stream, so
adding one never changes another concern's draws. Several specs compose: offsets, noise and rises
add up, mix shifts apply in the order given, concept levers multiply, and ``corrupt`` is applied after
``missing`` (a corrupted field is written even if it also dropped out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np

from driftloop.simulate._plant import (
    BASE_MIX,
    DAY_MS,
    P_TOOL_FAILS,
    SENSOR_SD,
    SENSOR_UNITS,
    UNITS_PER_K,
    quantise,
)
from driftloop.simulate._scenarios import SCENARIO_CODES, SENSORS, mix_probabilities, options_of, resolved
from driftloop.simulate._streams import Concern, stream

if TYPE_CHECKING:
    from collections.abc import Iterator

    from numpy.typing import NDArray

    from driftloop.simulate._scenarios import DriftSpec

__all__ = [
    "CORRUPT_TEXTS",
    "Damage",
    "Drift",
    "Today",
    "concept_levers",
    "damage",
    "measure",
    "prepare",
    "product_mix",
    "temperature_rise_dk",
]

# Text that no number parser accepts and that no common CSV reader takes for a null ("NA", "nan", "n/a"
# would be read as missing or as floats, hiding the corruption).
CORRUPT_TEXTS = ("ERR", "#VALUE!", "sensor fault", "--", "?", "1O5.2")
UNKNOWN_VARIANTS = ("X", "Z", "LM")
OVERSPEED_RPM = 1_000_000
_CORRUPT_KINDS = 6  # text in a number, negative torque, overspeed, sub-zero temperature, variant, timestamp


@dataclass(frozen=True, slots=True)
class Drift:
    """A spec ready to apply: options resolved, plus its occurrence among specs of the same scenario
    (which separates their random streams)."""

    spec: DriftSpec
    options: dict[str, str]
    occurrence: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def severity(self) -> float:
        return self.spec.severity


@dataclass(frozen=True, slots=True)
class Today:
    """The day being generated: which drifts are requested and where the random streams come from."""

    drifts: tuple[Drift, ...]
    day: date
    seed: int
    index: int  # 0-based day of the run

    def active(self, name: str) -> Iterator[Drift]:
        """The specs of scenario ``name`` in effect today, in the order requested."""
        return (d for d in self.drifts if d.name == name and self.day >= d.spec.start)

    def rng(self, drift: Drift) -> np.random.Generator:
        """``drift``'s own stream for today."""
        concern = Concern.SCENARIO_BASE + SCENARIO_CODES[drift.name]
        return stream(self.seed, self.index, concern, drift.occurrence)


@dataclass(frozen=True, slots=True)
class Damage:
    """What the record stage did to one day's rows.

    ``blank``: per column, the rows written as empty fields. ``text``: per column, rows (ascending) and
    the text written there instead of the value. ``touched``: per requested scenario, rows it damaged.
    """

    blank: dict[str, NDArray[np.bool_]] = field(default_factory=dict)
    text: dict[str, tuple[NDArray[np.int64], list[str]]] = field(default_factory=dict)
    touched: dict[str, int] = field(default_factory=dict)


def prepare(specs: tuple[DriftSpec, ...]) -> tuple[Drift, ...]:
    """Resolve options and number repeated scenarios in the order given."""
    seen: dict[str, int] = {}
    drifts = []
    for spec in specs:
        occurrence = seen.get(spec.name, 0)
        seen[spec.name] = occurrence + 1
        drifts.append(Drift(resolved(spec), options_of(spec), occurrence))
    return tuple(drifts)


def temperature_rise_dk(today: Today, offset_ms: NDArray[np.int64]) -> NDArray[np.int64] | None:
    """``ambient``: rise of air and process temperature per row in tenths of K (None when inactive).

    Quantised before it is added, so both temperatures rise by the same number of tenths and their
    difference (hence heat-dissipation failures) is exactly unchanged.
    """
    total: NDArray[np.float64] | None = None
    for d in today.active("ambient"):
        ramp = float(d.options["ramp_days"])
        elapsed = (today.day - d.spec.start).days + offset_ms / DAY_MS
        share = np.ones(len(offset_ms)) if ramp == 0 else np.clip(elapsed / ramp, 0.0, 1.0)
        rise = d.severity * share
        total = rise if total is None else total + rise
    return None if total is None else quantise(total, UNITS_PER_K)


def product_mix(today: Today) -> tuple[float, float]:
    """``mix-shift``: P(L) and P(M) on ``day``, each active spec moving the mix toward its target."""
    mix = BASE_MIX
    for d in today.active("mix-shift"):
        target = mix_probabilities(d.options["mix"])
        s = d.severity
        mix = ((1 - s) * mix[0] + s * target[0], (1 - s) * mix[1] + s * target[1], 0.0)
    return mix[0], mix[1]


def concept_levers(today: Today) -> tuple[float, float]:
    """``concept``: the overstrain-limit factor and the share of worn-out tools that fail on ``day``."""
    osf_factor, survive = 1.0, 1.0 - P_TOOL_FAILS
    for d in today.active("concept"):
        osf_factor *= 1.0 - 0.5 * d.severity
        # The new supplier's tools break at end of life more often: the replaced share shrinks.
        survive *= 1.0 - 0.5 * d.severity
    return osf_factor, 1.0 - survive


def measure(
    today: Today, true_units: dict[str, NDArray[np.float64]], true_readings: dict[str, NDArray[np.int64]]
) -> dict[str, NDArray[np.int64]]:
    """Readings in sensor units, from the true values before rounding (``true_units``) and after
    (``true_readings``: rounded, plus any ``ambient`` rise).

    Without sensor drift a reading is the true reading itself (the same array). A ``sensor-offset``
    that is a whole number of resolution steps shifts every reading by exactly that many steps; a finer
    bias is added before rounding, so it shifts readings on average.
    """
    whole = dict.fromkeys(SENSORS, 0)
    fine: dict[str, NDArray[np.float64] | float] = dict.fromkeys(SENSORS, 0.0)
    for d in today.drifts:
        if d.name not in ("sensor-offset", "sensor-noise") or today.day < d.spec.start:
            continue
        sensor = d.options["sensor"]
        units = SENSOR_UNITS[sensor]
        if d.name == "sensor-offset":
            steps = d.severity * units
            nearest = round(steps)
            if abs(steps - nearest) < 1e-6:
                whole[sensor] += nearest
            else:
                whole[sensor] += math.floor(steps)
                fine[sensor] = fine[sensor] + (steps - math.floor(steps))
        else:
            sd = d.severity * SENSOR_SD[sensor] * units
            noise = today.rng(d).normal(0.0, sd, size=len(true_units[sensor]))
            fine[sensor] = fine[sensor] + noise
    readings = {}
    for sensor in SENSORS:
        reading = true_readings[sensor]
        extra = fine[sensor]
        if not (isinstance(extra, float) and extra == 0.0):
            value = true_units[sensor]
            # Re-round with the extra term; the rise (already whole tenths) is carried over unchanged.
            rise = reading - np.floor(value + 0.5).astype(np.int64)
            reading = np.floor(value + extra + 0.5).astype(np.int64) + rise
        readings[sensor] = reading + whole[sensor] if whole[sensor] else reading
    return readings


def damage(
    today: Today, offset_ms: NDArray[np.int64], readings: dict[str, NDArray[np.int64]]
) -> tuple[dict[str, NDArray[np.int64]], Damage]:
    """``missing`` then ``corrupt``: the readings with impossible values written in, and the damage.

    ``touched`` has an entry for every data-quality scenario requested, active today or not.
    """
    rows = len(offset_ms)
    result = Damage()
    requested = {d.name for d in today.drifts}
    if "missing" in requested:
        hit = np.zeros(rows, dtype=np.bool_)
        for d in today.active("missing"):
            mask = today.rng(d).random(rows) < d.severity
            hit |= mask
            columns = SENSORS if d.options["sensor"] == "all" else (d.options["sensor"],)
            for column in columns:
                previous = result.blank.get(column)
                result.blank[column] = mask.copy() if previous is None else previous | mask
        result.touched["missing"] = int(hit.sum())
    if "corrupt" in requested:
        readings, corrupted = _corrupt(today, offset_ms, readings, result)
        result.touched["corrupt"] = corrupted
    return readings, result


def _corrupt(
    today: Today, offset_ms: NDArray[np.int64], readings: dict[str, NDArray[np.int64]], result: Damage
) -> tuple[dict[str, NDArray[np.int64]], int]:
    rows = len(offset_ms)
    texts: dict[str, dict[int, str]] = {}
    numbers: dict[str, dict[int, int]] = {}
    hit_rows: set[int] = set()
    for d in today.active("corrupt"):
        rng = today.rng(d)
        hit = np.flatnonzero(rng.random(rows) < d.severity)
        kinds = rng.integers(0, _CORRUPT_KINDS, size=hit.size)
        picks = rng.integers(0, 1 << 30, size=hit.size)
        for row, kind, pick in zip(hit.tolist(), kinds.tolist(), picks.tolist(), strict=True):
            column, value = _corruption(
                kind, pick, day=today.day, offset_ms=int(offset_ms[row]), readings=readings, row=row
            )
            # A later corruption of the same field replaces an earlier one.
            texts.get(column, {}).pop(row, None)
            numbers.get(column, {}).pop(row, None)
            if isinstance(value, str):
                texts.setdefault(column, {})[row] = value
            else:
                numbers.setdefault(column, {})[row] = value
        hit_rows.update(hit.tolist())
    changed = dict(readings)
    for column, values in numbers.items():
        idx = np.fromiter(values, dtype=np.int64, count=len(values))
        changed[column] = readings[column].copy()
        changed[column][idx] = np.fromiter(values.values(), dtype=np.int64, count=len(values))
        _unblank(result, column, idx)
    for column, by_row in texts.items():
        ordered = sorted(by_row)
        idx = np.asarray(ordered, dtype=np.int64)
        result.text[column] = (idx, [by_row[r] for r in ordered])
        _unblank(result, column, idx)
    return changed, len(hit_rows)


def _corruption(
    kind: int, pick: int, *, day: date, offset_ms: int, readings: dict[str, NDArray[np.int64]], row: int
) -> tuple[str, str | int]:
    """The column and the bad value (text, or an impossible number in sensor units) of one corruption."""
    if kind == 0:
        return SENSORS[pick % len(SENSORS)], CORRUPT_TEXTS[(pick // len(SENSORS)) % len(CORRUPT_TEXTS)]
    if kind == 1:
        return "torque_nm", -max(abs(int(readings["torque_nm"][row])), 1)
    if kind == 2:
        return "rotational_speed_rpm", OVERSPEED_RPM
    if kind == 3:
        column = ("air_temperature_k", "process_temperature_k")[pick % 2]
        return column, -max(abs(int(readings[column][row])), 1)
    if kind == 4:
        return "product_variant", UNKNOWN_VARIANTS[pick % len(UNKNOWN_VARIANTS)]
    # An hour of 25..48 looks like a timestamp but no ISO-8601 parser accepts it.
    moment = timedelta(milliseconds=offset_ms)
    hour, rest = divmod(moment.seconds, 3600)
    return "timestamp", (
        f"{day.isoformat()}T{25 + hour:02d}:{rest // 60:02d}:{rest % 60:02d}."
        f"{moment.microseconds // 1000:03d}Z"
    )


def _unblank(result: Damage, column: str, idx: NDArray[np.int64]) -> None:
    blank = result.blank.get(column)
    if blank is not None:
        blank[idx] = False
