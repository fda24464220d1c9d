"""One simulated day: the plant's physics with the requested drift applied. Pure: no I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np

from driftloop.simulate._drift import (
    Damage,
    Drift,
    Today,
    concept_levers,
    damage,
    measure,
    product_mix,
    temperature_rise_dk,
)
from driftloop.simulate._plant import (
    UNITS_PER_K,
    UNITS_PER_NM,
    Failures,
    PlantState,
    choose_variants,
    climate,
    draw_inputs,
    failure_flags,
    rotational_speed,
    run_tools,
)
from driftloop.simulate._streams import Concern, stream

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["DayTable", "Plan", "simulate_day"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The request, reduced to what generating a day needs."""

    seed: int
    start: date
    rows_per_day: int
    machines: int
    drifts: tuple[Drift, ...]


@dataclass(frozen=True, slots=True)
class DayTable:
    """One day's rows in timestamp order: what the sensors report, what truly failed, what got damaged.

    ``readings`` maps each sensor column to integers in the sensor's units (tenths of K, rpm, tenths
    of Nm, minutes).
    """

    day: date
    offset_ms: NDArray[np.int64]
    machine: NDArray[np.int32]
    variant: NDArray[np.int8]
    readings: dict[str, NDArray[np.int64]]
    failures: Failures
    damage: Damage

    @property
    def rows(self) -> int:
        return len(self.offset_ms)


def simulate_day(plan: Plan, day_index: int, state: PlantState) -> tuple[DayTable, PlantState]:
    """Generate day ``day_index`` (0-based) from the plant's state at the end of the previous day.

    Returns the day's table and the state to carry into the next day. Depends only on the plan, the
    day index and ``state``, which is what makes a run's first days independent of its length.
    """
    seed = plan.seed
    day = plan.start + timedelta(days=day_index)
    today = Today(plan.drifts, day, seed, day_index)
    inputs = draw_inputs(seed, day_index, plan.rows_per_day, plan.machines)
    air_k, process_k, air_end, process_end = climate(seed, day_index, state, inputs.offset_ms)
    variant = choose_variants(inputs.variant_u, *product_mix(today))
    speed = rotational_speed(inputs.torque_nm, inputs.speed_noise_rpm)
    tools, state = run_tools(seed, day_index, state, inputs.machine, variant)

    true_units = {
        "air_temperature_k": air_k * UNITS_PER_K,
        "process_temperature_k": process_k * UNITS_PER_K,
        "rotational_speed_rpm": speed,
        "torque_nm": inputs.torque_nm * UNITS_PER_NM,
        "tool_wear_min": tools.wear_min.astype(np.float64),
    }
    true = {name: np.floor(value + 0.5).astype(np.int64) for name, value in true_units.items()}
    rise = temperature_rise_dk(today, inputs.offset_ms)
    if rise is not None:
        true["air_temperature_k"] += rise
        true["process_temperature_k"] += rise

    osf_factor, p_tool_fails = concept_levers(today)
    failures = failure_flags(
        air_dk=true["air_temperature_k"],
        process_dk=true["process_temperature_k"],
        speed_rpm=true["rotational_speed_rpm"],
        torque_dnm=true["torque_nm"],
        wear_min=true["tool_wear_min"],
        variant=variant,
        tools=tools,
        random_u=stream(seed, day_index, Concern.FAILURES).random(plan.rows_per_day),
        osf_factor=osf_factor,
        p_tool_fails=p_tool_fails,
    )
    readings = measure(today, true_units, true)
    readings, damaged = damage(today, inputs.offset_ms, readings)
    table = DayTable(day, inputs.offset_ms, inputs.machine, variant, readings, failures, damaged)
    return table, dataclasses.replace(state, air_dev=air_end, process_dev=process_end)
