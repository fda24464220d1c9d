"""Drift scenarios: their descriptors, the :class:`DriftSpec` that asks for one, and its parser.

A descriptor says what a scenario does, which options it takes and which severities make sense; the
effects themselves live in ``_drift`` and act only on rows dated on or after the spec's ``start``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import TYPE_CHECKING

from driftloop.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "SCENARIOS",
    "SCENARIO_CODES",
    "SENSORS",
    "DriftSpec",
    "Scenario",
    "ScenarioOption",
    "Severity",
    "changed_columns",
    "mix_probabilities",
    "options_of",
    "parse_drift",
    "resolved",
]

# The numeric sensor columns of the raw data, in output order.
SENSORS = (
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)
_VARIANT_KEYS = ("L", "M", "H")


@dataclass(frozen=True, slots=True)
class Severity:
    """The severities a scenario accepts: ``[low, high]``, or ``(low, high]`` when ``low_open``."""

    low: float
    high: float
    default: float
    unit: str
    low_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        bracket = "(" if self.low_open else "["
        return f"a number in {bracket}{self.low:g}, {self.high:g}] ({self.unit}; default {self.default:g})"


@dataclass(frozen=True, slots=True)
class ScenarioOption:
    """One ``key=value`` option of a scenario. ``parse`` returns the canonical text or raises ValueError
    with what was expected."""

    name: str
    default: str
    help: str
    parse: Callable[[str], str] = field(repr=False, compare=False)


def _no_columns(_options: Mapping[str, str]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a drift scenario does, its options and severity range.

    ``changes`` names the raw input columns whose distribution of (valid, present) values the scenario
    changes, given its resolved options: what a drift monitor should flag, the ground truth of
    ``benchmarks/drift_scenarios.py``. Blanked or garbled fields (``missing``, ``corrupt``) are data
    quality, not a change of the values' distribution; ``concept`` changes outcomes, not inputs.
    """

    name: str
    summary: str
    severity: Severity
    options: tuple[ScenarioOption, ...] = ()
    changes: Callable[[Mapping[str, str]], tuple[str, ...]] = field(default=_no_columns, compare=False)

    def option(self, name: str) -> ScenarioOption | None:
        return next((opt for opt in self.options if opt.name == name), None)


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError("choose one of " + ", ".join(choices))
        return text

    return parse


def _non_negative_days(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected a number of days ≥ 0, e.g. 30")
    return f"{value:g}"


def _mix(text: str) -> str:
    return "/".join(f"{k}:{v:g}" for k, v in zip(_VARIANT_KEYS, mix_probabilities(text), strict=True))


def mix_probabilities(text: str) -> tuple[float, float, float]:
    """P(L), P(M), P(H) from ``"L:0.2/M:0.3/H:0.5"``; raises ValueError naming the expected form."""
    expected = "expected shares like L:0.2/M:0.3/H:0.5 that are ≥ 0 and sum to 1"
    shares: dict[str, float] = {}
    for part in text.split("/"):
        key, sep, value = part.partition(":")
        key = key.strip().upper()
        if not sep or key not in _VARIANT_KEYS or key in shares:
            raise ValueError(expected)
        try:
            shares[key] = float(value)
        except ValueError:
            raise ValueError(expected) from None
    values = tuple(shares.get(k, math.nan) for k in _VARIANT_KEYS)
    if not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(expected)
    low, medium, high = values
    return low, medium, high


_SENSOR = ScenarioOption("sensor", "air_temperature_k", "which sensor column is affected", _choice(SENSORS))


def _the_sensor(options: Mapping[str, str]) -> tuple[str, ...]:
    return (options["sensor"],)


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario(
                "sensor-offset",
                "a miscalibrated sensor: its readings are biased by SEVERITY (in the sensor's units); "
                "the process and its failures are unchanged",
                Severity(-1000.0, 1000.0, 2.0, "bias in the sensor's units"),
                (_SENSOR,),
                _the_sensor,
            ),
            Scenario(
                "sensor-noise",
                "a degrading sensor: extra reading noise with sd = SEVERITY × the sensor's natural sd",
                Severity(0.0, 10.0, 1.0, "multiple of the natural sd"),
                (_SENSOR,),
                _the_sensor,
            ),
            Scenario(
                "mix-shift",
                "a new order book: product-variant shares move from 50/30/20 % toward MIX by SEVERITY",
                Severity(0.0, 1.0, 0.5, "share of the way to the target mix"),
                (ScenarioOption("mix", "L:0.2/M:0.3/H:0.5", "target shares of variants L/M/H", _mix),),
                lambda _options: ("product_variant",),
            ),
            Scenario(
                "ambient",
                "a warm season: air and process temperature rise together by SEVERITY K, "
                "ramping in linearly over RAMP_DAYS",
                Severity(-50.0, 50.0, 5.0, "K of temperature rise"),
                (
                    ScenarioOption(
                        "ramp_days", "30", "days to reach the full rise (0: a step)", _non_negative_days
                    ),
                ),
                lambda _options: ("air_temperature_k", "process_temperature_k"),
            ),
            Scenario(
                "concept",
                "a new tool supplier: same inputs, more failures — overstrain limits scaled by "
                "(1 - 0.5·SEVERITY) and more worn-out tools fail instead of being replaced",
                Severity(0.0, 1.0, 0.5, "strength of the change", low_open=True),
            ),
            Scenario(
                "missing",
                "sensor dropouts: a SEVERITY share of rows have empty readings",
                Severity(0.0, 1.0, 0.05, "share of rows"),
                (
                    ScenarioOption(
                        "sensor",
                        "all",
                        "the sensor column that drops out, or all of them",
                        _choice((*SENSORS, "all")),
                    ),
                ),
            ),
            Scenario(
                "corrupt",
                "malformed rows: text in numeric fields, impossible values, unknown variants, "
                "unparseable timestamps in a SEVERITY share of rows (labels are still written)",
                Severity(0.0, 1.0, 0.01, "share of rows"),
            ),
        )
    }
)

# Fixed identifiers for each scenario's random stream; part of the output's identity, never renumber.
SCENARIO_CODES: Mapping[str, int] = MappingProxyType(
    {
        "sensor-offset": 1,
        "sensor-noise": 2,
        "mix-shift": 3,
        "ambient": 4,
        "concept": 5,
        "missing": 6,
        "corrupt": 7,
    }
)


@dataclass(frozen=True)
class DriftSpec:
    """One drift scenario to apply from ``start`` (the first affected day) on.

    ``params`` holds scenario options as ``(name, value)`` pairs; omitted options take their defaults.
    Construction validates everything and raises :class:`UsageError` with a one-line headline.
    """

    name: str
    start: date
    severity: float
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        scenario = _scenario(self.name)
        if not isinstance(self.start, date):
            raise UsageError(f"invalid start for drift {self.name!r}: expected a date")
        _check_severity(scenario, self.severity)
        seen: set[str] = set()
        canonical = []
        for key, value in self.params:
            option = _option(scenario, key)
            if key in seen:
                raise UsageError(f"option {key!r} given twice for drift {self.name!r}")
            seen.add(key)
            canonical.append((key, _parse_option(scenario, option, value)))
        object.__setattr__(self, "params", tuple(canonical))


def parse_drift(text: str, default_start: date) -> DriftSpec:
    """Parse ``NAME[:key=value,…]`` (keys ``start``, ``severity`` and the scenario's options).

    Omitted ``start`` is ``default_start``; omitted severity and options take the scenario's defaults,
    and the returned spec spells every option out. Raises :class:`UsageError` naming the problem and
    the valid choices.
    """
    name, _, rest = text.strip().partition(":")
    scenario = _scenario(name.strip())
    start, severity = default_start, scenario.severity.default
    params: dict[str, str] = {}
    given: set[str] = set()
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise UsageError(
                f"invalid drift {text!r}: expected NAME[:key=value,…], "
                "e.g. sensor-offset:start=2026-01-10,severity=2.5,sensor=torque_nm"
            )
        if key in given:
            raise UsageError(f"option {key!r} given twice for drift {scenario.name!r}")
        given.add(key)
        if key == "start":
            start = _parse_date(scenario, value)
        elif key == "severity":
            severity = _parse_number(scenario, value)
        else:
            params[key] = _parse_option(scenario, _option(scenario, key), value)
    return resolved(DriftSpec(scenario.name, start, severity, tuple(params.items())))


def options_of(spec: DriftSpec) -> dict[str, str]:
    """Every option of ``spec``'s scenario, defaults filled in, in the descriptor's order."""
    given = dict(spec.params)
    return {opt.name: given.get(opt.name, opt.default) for opt in SCENARIOS[spec.name].options}


def changed_columns(spec: DriftSpec) -> tuple[str, ...]:
    """The raw input columns whose value distribution ``spec`` changes (see :class:`Scenario`)."""
    return SCENARIOS[spec.name].changes(options_of(spec))


def resolved(spec: DriftSpec) -> DriftSpec:
    """``spec`` with every option spelled out (what a record of the run should show)."""
    return DriftSpec(spec.name, spec.start, float(spec.severity), tuple(options_of(spec).items()))


def _scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(
            f"unknown drift scenario {name!r}; valid scenarios: {', '.join(sorted(SCENARIOS))}"
        ) from None


def _option(scenario: Scenario, key: str) -> ScenarioOption:
    option = scenario.option(key)
    if option is None:
        valid = ", ".join(["start", "severity", *(opt.name for opt in scenario.options)])
        raise UsageError(f"unknown option {key!r} for drift {scenario.name!r}; valid options: {valid}")
    return option


def _parse_option(scenario: Scenario, option: ScenarioOption, value: str) -> str:
    try:
        return option.parse(value)
    except ValueError as exc:
        raise UsageError(f"invalid {option.name} {value!r} for drift {scenario.name!r}: {exc}") from None


def _parse_date(scenario: Scenario, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"invalid start {value!r} for drift {scenario.name!r}: expected a date like 2026-01-31"
        ) from None


def _parse_number(scenario: Scenario, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise UsageError(
            f"invalid severity {value!r} for drift {scenario.name!r}: expected {scenario.severity.describe()}"
        )
    return number


def _check_severity(scenario: Scenario, severity: float) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int | float):
        raise UsageError(f"invalid severity {severity!r} for drift {scenario.name!r}: expected a number")
    if not math.isfinite(severity) or not scenario.severity.contains(severity):
        raise UsageError(
            f"severity {severity:g} out of range for drift {scenario.name!r}: "
            f"expected {scenario.severity.describe()}"
        )
