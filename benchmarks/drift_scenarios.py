"""Drift scenario benchmark: does the monitor flag the features a scenario changed, and only those?

For each seed the simulator writes ``--reference-days`` clean days followed by ``--held-out-days`` days
of one drift scenario (every scenario of :data:`driftloop.simulate.SCENARIOS` at its default severity,
plus a clean run); the reference days are the same for every scenario of a seed. The reference profile
is built as training builds it — on the last 20 % of the reference rows (the hold-out), calibrated on
the days before it (decision 0060) — with no model: the assessment is of the features only. Each
held-out day is one 24-hour window, assessed as ``driftloop monitor`` does. Its flagged features are
compared with the columns the scenario changed (``driftloop.simulate.changed_columns``):

- precision: flagged features that the scenario changed / all flagged (— when nothing was flagged);
- recall: changed features that were flagged / all changed (— for scenarios that change no input's
  distribution: ``concept`` changes outcomes, ``missing``/``corrupt`` are data quality).

Printed per scenario and overall (micro-averaged over windows) for three monitors in the same run:
``calibrated`` (the defaults: calibrated thresholds and relations), ``per-feature`` (calibrated
thresholds, no relations) and, as the anchor, ``hand-set`` (the thresholds calibration replaces:
temperatures at normalised Wasserstein 1.5, everything else at the configured defaults, no
relations). Deterministic for given arguments. Exit status 0 whatever the figures; non-zero only when
something crashes.

    .venv/bin/python benchmarks/drift_scenarios.py [--seeds 8] [--first-seed 0] [--margin 2.0]
        [--reference-days 8] [--held-out-days 4]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.core.profile import build_profile
from driftloop.core.relations import calibrate_reference
from driftloop.monitoring.assess import assess
from driftloop.monitoring.window import CaptureChunk
from driftloop.settings import FeatureDriftTest, MonitoringSettings, Settings
from driftloop.simulate import SCENARIOS, SimulationRequest, changed_columns, parse_drift, simulate
from driftloop.simulate.plant import SENSORS
from driftloop.storage import open_store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.settings import ColumnSpec

START = date(2026, 1, 1)
ROWS_PER_DAY = 2500  # the demo's plant
MACHINES = 20
HOLDOUT_SHARE = 0.2  # training.holdout_share's default
CATEGORICAL = ("product_variant",)
FEATURES = (*SENSORS, *CATEGORICAL)
# Where the scenario's default would show nothing in a few days: ambient ramps in over 30 days by
# default (0.17 K a day, well inside the weather); a step of the same 5 K is the case worth measuring.
OPTIONS = {"ambient": "ramp_days=0"}
# The hand-set thresholds calibration replaces (DRIFT_OVERRIDES before decision 0060).
HAND_SET = MonitoringSettings(
    calibrated_thresholds=False,
    features={
        name: FeatureDriftTest(method="wasserstein", threshold=1.5)
        for name in ("air_temperature_k", "process_temperature_k")
    },
)
CALIBRATED = MonitoringSettings()
DEMO_OFFSET = "sensor-offset:severity=3,sensor=air_temperature_k"  # what `driftloop demo` injects


@dataclass
class Tally:
    """Flags against truth over the windows of one scenario and one set of thresholds."""

    windows: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    flagged: dict[str, int] = field(default_factory=dict)

    def add(self, flagged: set[str], changed: set[str]) -> None:
        self.windows += 1
        self.true_positives += len(flagged & changed)
        self.false_positives += len(flagged - changed)
        self.false_negatives += len(changed - flagged)
        for name in flagged:
            self.flagged[name] = self.flagged.get(name, 0) + 1

    def __iadd__(self, other: Tally) -> Tally:
        self.windows += other.windows
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives
        return self

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        changed = self.true_positives + self.false_negatives
        return self.true_positives / changed if changed else None


def simulate_days(root: Path, seed: int, days: int, drift: str | None, onset: date) -> list[pd.DataFrame]:
    """The days of one run as the CSV holds them, parsed (an empty or garbled field is NaN/None)."""
    store = open_store(str(root))
    request = SimulationRequest(
        dataset="plant",
        start=START,
        days=days,
        rows_per_day=ROWS_PER_DAY,
        machines=MACHINES,
        seed=seed,
        label_delay=timedelta(hours=6),
        drifts=(parse_drift(drift, onset),) if drift else (),
    )
    summary = simulate(request, store)
    return [_parse(store.read_bytes(key)) for key in summary.raw_keys]


def _parse(data: bytes) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)
    for name in SENSORS:
        frame[name] = pd.to_numeric(frame[name].replace("", None), errors="coerce")
    frame["product_variant"] = frame["product_variant"].replace("", None)
    return frame


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {name: frame[name].to_numpy(np.float64) for name in SENSORS}
    columns |= {name: frame[name].to_numpy(object) for name in CATEGORICAL}
    return columns


def reference_profile(days: Sequence[pd.DataFrame], min_rows: int) -> dict[str, Any]:
    """The profile training would store: the hold-out's summary, calibrated on the days before it."""
    table = pd.concat(days, ignore_index=True)
    holdout_start = round(len(table) * (1 - HOLDOUT_SHARE))
    holdout, before = table.iloc[holdout_start:], table.iloc[:holdout_start]
    reference = _columns(holdout)
    profile = build_profile(reference, numeric=SENSORS, categorical=CATEGORICAL)
    return calibrate_reference(
        profile, reference, _columns(before), before["timestamp"].to_numpy(), min_rows=min_rows
    )


def flagged(profile: dict[str, Any], day: pd.DataFrame, schema: Sequence[ColumnSpec], cfg: Any) -> set[str]:
    chunk = CaptureChunk.from_columns(_columns(day), np.full(len(day), np.nan))
    return set(assess(profile, [chunk], schema=schema, cfg=cfg).dataset.drifted_features)


def _pct(value: float | None) -> str:
    return "    —" if value is None else f"{value:5.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=None, help="monitoring.calibration_margin")
    parser.add_argument("--reference-days", type=int, default=8)
    parser.add_argument("--held-out-days", type=int, default=4)
    args = parser.parse_args()
    began = time.perf_counter()
    days = args.reference_days + args.held_out_days
    onset = START + timedelta(days=args.reference_days)
    schema = [c for c in Settings().data.columns if c.name in FEATURES]
    cases: list[tuple[str, str | None]] = [("none", None)]
    cases += [(name, f"{name}:{OPTIONS[name]}" if name in OPTIONS else name) for name in SCENARIOS]
    cases.insert(2, ("offset (demo)", DEMO_OFFSET))
    calibrated = CALIBRATED
    if args.margin is not None:
        calibrated = CALIBRATED.model_copy(update={"calibration_margin": args.margin})
    monitors = ("calibrated", "per-feature", "hand-set")
    tallies = {(case, which): Tally() for case, _ in cases for which in monitors}
    thresholds: dict[str, list[float]] = {name: [] for name in FEATURES}
    relations: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            profile: dict[str, Any] | None = None
            for case, drift in cases:
                run = simulate_days(Path(tmp) / f"{seed}-{case}", seed, days, drift, onset)
                if profile is None:  # the reference days are the same in every scenario of a seed
                    profile = reference_profile(run[: args.reference_days], calibrated.min_samples)
                    for name in profile.get("relations", {}):
                        relations[name] = relations.get(name, 0) + 1
                    for name in FEATURES:
                        scores = profile["features"][name].get("calibration", {}).get("scores", {})
                        method = "wasserstein" if name in SENSORS else CALIBRATED.categorical_method
                        clean = max(scores.get(method, [0.0]))
                        thresholds[name].append(max(clean * calibrated.calibration_margin, 0.1))
                changed = set(changed_columns(parse_drift(drift, onset))) if drift else set()
                alone = {k: v for k, v in profile.items() if k != "relations"}
                judged = (
                    ("calibrated", profile, calibrated),
                    ("per-feature", alone, calibrated),
                    ("hand-set", alone, HAND_SET),
                )
                for day in run[args.reference_days :]:
                    for which, used, cfg in judged:
                        tallies[case, which].add(flagged(used, day, schema, cfg), changed)
    report(
        args,
        cases=cases,
        onset=onset,
        tallies=tallies,
        thresholds=thresholds,
        relations=relations,
        calibrated=calibrated,
        seconds=time.perf_counter() - began,
    )


def report(
    args: argparse.Namespace,
    *,
    cases: Sequence[tuple[str, str | None]],
    onset: date,
    tallies: dict[tuple[str, str], Tally],
    thresholds: dict[str, list[float]],
    relations: dict[str, int],
    calibrated: MonitoringSettings,
    seconds: float,
) -> None:
    """Print the figures: thresholds, relations, then precision and recall per scenario and monitor."""
    monitors = ("calibrated", "per-feature", "hand-set")
    print(
        f"drift scenarios: {args.seeds} seeds × {args.held_out_days} held-out days of {ROWS_PER_DAY:,} rows "
        f"after {args.reference_days} reference days; one 24-hour window per day "
        f"({seconds:.0f} s)"
    )
    print(
        f"calibrated thresholds (margin {calibrated.calibration_margin:g}; mean over seeds; the configured "
        "0.1 where the clean days stay under it):"
    )
    print("  " + ", ".join(f"{name} {np.mean(values):.3g}" for name, values in thresholds.items()))
    found = ", ".join(f"{k} ({v}/{args.seeds} seeds)" for k, v in relations.items())
    print(f"relations found: {found or 'none'}")
    columns = ("precision", "recall", "flagged (windows)")
    print(
        f"{'scenario':<15} {'changes':<44} {'thresholds':<11} {columns[0]:>9} {columns[1]:>7}  {columns[2]}"
    )
    totals = {which: Tally() for which in monitors}
    for case, drift in cases:
        changes = ", ".join(changed_columns(parse_drift(drift, onset))) if drift else ""
        for which in monitors:
            t = tallies[case, which]
            totals[which] += t
            seen = ", ".join(f"{k} {v}/{t.windows}" for k, v in sorted(t.flagged.items())) or "none"
            label = case if which == "calibrated" else ""
            what = (changes or "(none)") if label else ""
            print(f"{label:<15} {what:<44} {which:<11} {_pct(t.precision):>9} {_pct(t.recall):>7}  {seen}")
    for which, t in totals.items():
        print(
            f"{'overall':<15} {'':<44} {which:<11} {_pct(t.precision):>9} {_pct(t.recall):>7}  "
            f"{t.true_positives} right flags, {t.false_positives} false, {t.false_negatives} missed"
        )


if __name__ == "__main__":
    main()
