"""The public surface: exported names, scenario descriptors, parsing and validation errors."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

import driftloop.simulate as sim
from driftloop.errors import UsageError
from driftloop.simulate import SCENARIOS, DriftSpec, SimulationRequest, SimulationSummary, parse_drift
from tests.simulate.support import START, request

D = date(2026, 2, 1)


def test_exported_names_do_not_change_by_accident() -> None:
    assert sorted(sim.__all__) == sorted(
        [
            "DriftSpec",
            "SCENARIOS",
            "parse_drift",
            "changed_columns",
            "SimulationRequest",
            "SimulationSummary",
            "simulate",
            "RAW_COLUMNS",
            "LABEL_COLUMNS",
        ]
    )
    assert sim.RAW_COLUMNS == (
        "timestamp",
        "record_id",
        "machine_id",
        "product_variant",
        "air_temperature_k",
        "process_temperature_k",
        "rotational_speed_rpm",
        "torque_nm",
        "tool_wear_min",
    )
    assert sim.LABEL_COLUMNS == (
        "record_id",
        "timestamp",
        "available_at",
        "machine_failure",
        "twf",
        "hdf",
        "pwf",
        "osf",
        "rnf",
    )


def test_scenario_descriptors_are_self_consistent() -> None:
    assert set(SCENARIOS) == {
        "sensor-offset",
        "sensor-noise",
        "mix-shift",
        "ambient",
        "concept",
        "missing",
        "corrupt",
    }
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert scenario.summary
        assert scenario.severity.contains(scenario.severity.default)
        # Every default spec is valid and parses back to itself.
        spec = parse_drift(name, D)
        assert spec == DriftSpec(name, D, scenario.severity.default, spec.params)
        assert [key for key, _ in spec.params] == [opt.name for opt in scenario.options]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sensor-offset:start=2026-01-10,severity=2.5,sensor=torque_nm",
            DriftSpec("sensor-offset", date(2026, 1, 10), 2.5, (("sensor", "torque_nm"),)),
        ),
        ("concept", DriftSpec("concept", D, 0.5)),
        (" concept : severity = 1 ", DriftSpec("concept", D, 1.0)),
        (
            "mix-shift:mix=h:0.5/l:0.25/m:0.25,severity=0",
            DriftSpec("mix-shift", D, 0.0, (("mix", "L:0.25/M:0.25/H:0.5"),)),
        ),
        ("ambient:ramp_days=0", DriftSpec("ambient", D, 5.0, (("ramp_days", "0"),))),
        ("missing:severity=0.2", DriftSpec("missing", D, 0.2, (("sensor", "all"),))),
        (
            "sensor-offset:severity=-3",
            DriftSpec("sensor-offset", D, -3.0, (("sensor", "air_temperature_k"),)),
        ),
    ],
)
def test_parse_drift(text: str, expected: DriftSpec) -> None:
    assert parse_drift(text, D) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("warp", r"unknown drift scenario 'warp'; valid scenarios: ambient, concept, corrupt, missing, "),
        ("", r"unknown drift scenario ''"),
        ("concept:speed=3", r"unknown option 'speed' for drift 'concept'; valid options: start, severity$"),
        ("sensor-noise:gain=3", r"valid options: start, severity, sensor$"),
        ("concept:start=2026-13-40", r"invalid start '2026-13-40' for drift 'concept': expected a date like"),
        (
            "concept:severity=lots",
            r"invalid severity 'lots' for drift 'concept': expected a number in \(0, 1\]",
        ),
        ("concept:severity=nan", r"invalid severity 'nan'"),
        ("concept:severity=0", r"severity 0 out of range for drift 'concept': expected a number in \(0, 1\]"),
        (
            "corrupt:severity=1.5",
            r"severity 1.5 out of range for drift 'corrupt': expected a number in \[0, 1\]",
        ),
        ("sensor-offset:sensor=humidity", r"invalid sensor 'humidity'.*choose one of air_temperature_k, "),
        ("missing:sensor=everything", r"choose one of .*tool_wear_min, all$"),
        ("mix-shift:mix=L:0.5/M:0.5/H:0.5", r"invalid mix .*sum to 1"),
        ("mix-shift:mix=L:1", r"invalid mix"),
        ("ambient:ramp_days=-1", r"invalid ramp_days '-1'.*≥ 0"),
        ("concept:severity", r"expected NAME\[:key=value,…\]"),
        ("concept:severity=0.5,severity=0.6", r"option 'severity' given twice"),
    ],
)
def test_bad_drift_text_is_a_one_line_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_drift(text, D)
    assert "\n" not in info.value.headline


def test_drift_spec_validates_itself() -> None:
    with pytest.raises(UsageError, match="unknown drift scenario 'nope'"):
        DriftSpec("nope", D, 1.0)
    with pytest.raises(UsageError, match="out of range"):
        DriftSpec("mix-shift", D, 2.0)
    with pytest.raises(UsageError, match="unknown option 'sensor' for drift 'concept'"):
        DriftSpec("concept", D, 0.5, (("sensor", "torque_nm"),))
    with pytest.raises(UsageError, match="given twice"):
        DriftSpec("missing", D, 0.1, (("sensor", "all"), ("sensor", "torque_nm")))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rows_per_day": -5}, r"invalid rows_per_day -5: must be at least 1"),
        ({"rows_per_day": 0}, r"invalid rows_per_day 0"),
        ({"days": 0}, r"invalid days 0: must be at least 1"),
        ({"machines": 0}, r"invalid machines 0"),
        ({"seed": -1}, r"invalid seed -1: must be at least 0"),
        ({"rows_per_day": 2.5}, r"invalid rows_per_day 2.5: expected a whole number"),
        ({"days": True}, r"expected a whole number"),
        ({"label_delay": timedelta(hours=-1)}, r"invalid label_delay .*≥ 0"),
        ({"dataset": "../etc"}, r"invalid dataset name '../etc'"),
        ({"dataset": ""}, r"invalid dataset name ''"),
        ({"dataset": "a b"}, r"invalid dataset name 'a b'"),
        ({"start": date(9999, 12, 30), "days": 5}, r"after year 9999"),
    ],
)
def test_bad_request_is_a_one_line_usage_error(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        request(**fields)
    assert "\n" not in info.value.headline


def test_request_accepts_drifts_anywhere_in_time_and_normalises_the_sequence() -> None:
    early = DriftSpec("concept", START - timedelta(days=400), 0.2)
    late = DriftSpec("concept", START + timedelta(days=400), 0.2)
    req = SimulationRequest("p.1_x-y", START, 1, 1, 1, 0, timedelta(0), [early, late])  # type: ignore[arg-type]
    assert req.drifts == (early, late)


def test_failure_rate() -> None:
    summary = SimulationSummary(
        rows=200,
        failures={"machine_failure": 7, "twf": 1, "hdf": 2, "pwf": 2, "osf": 2, "rnf": 0},
        raw_keys=(),
        label_keys=(),
        drifts=(),
        quarantine_hint={},
    )
    assert summary.failure_rate("machine_failure") == pytest.approx(0.035)
    assert summary.failure_rate("rnf") == 0.0
    with pytest.raises(UsageError, match="unknown failure mode 'tw'; valid modes: machine_failure, twf"):
        summary.failure_rate("tw")


def test_each_scenario_names_the_input_columns_it_changes() -> None:
    spec = sim.parse_drift("sensor-offset:sensor=torque_nm", D)
    assert sim.changed_columns(spec) == ("torque_nm",)
    ambient = sim.parse_drift("ambient", D)
    assert sim.changed_columns(ambient) == ("air_temperature_k", "process_temperature_k")
    assert sim.changed_columns(sim.parse_drift("mix-shift", D)) == ("product_variant",)
    # Outcomes, blanks and garbage are not a change of the present values' distribution.
    for name in ("concept", "missing", "corrupt"):
        assert sim.changed_columns(sim.parse_drift(name, D)) == ()
