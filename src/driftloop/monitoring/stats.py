"""Drift statistics: per-feature tests against the reference profile, the dataset verdict, prediction drift.

The window is counted by the streaming accumulators of :mod:`driftloop.monitoring.stats_accumulators`
(re-exported here); the tests below read only those counts and the stored reference profile, never raw
reference data. Methods (a distance above the threshold, or a p-value below it, is drift):

- numeric: ``wasserstein`` (normalised by the reference's standard deviation, as Evidently's
  "Wasserstein distance (normed)"), ``psi`` and ``jensenshannon`` (base 2) on the profile's decile bins,
  ``ks`` (p-value of the two-sample test with effective size n·m/(n+m));
- categorical: ``jensenshannon`` (base 2), ``psi``, ``chisquare`` (p-value, reference shares as expected
  frequencies, the statistic scaled by m/(m+n) for the reference's own noise; a category the reference
  never saw is expected at half a reference count).

Which test applies is :func:`pick_test`: a per-feature override; else the distance with a threshold
calibrated from the reference's own clean chunks when the feature wanders more than the configured
threshold allows (:mod:`driftloop.core.calibration`, decision 0060); else p-values on small windows and
distances on large ones, where p-values flag shifts too small to matter (evidentlyai/evidently#50).

Every result says which way is worse (``direction``): a distance is worse when higher, a p-value when
lower.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import stats as sps

from driftloop.core.calibration import PSI_EPSILON, STD_FLOOR, calibrated_threshold, js_distance, psi, shares
from driftloop.errors import ConfigError, DataError
from driftloop.monitoring.stats_accumulators import CategoricalAccumulator, NumericAccumulator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from driftloop.settings import MonitoringSettings

__all__ = [
    "CATEGORICAL_METHODS",
    "NUMERIC_METHODS",
    "PSI_EPSILON",
    "P_VALUE_METHODS",
    "CategoricalAccumulator",
    "DatasetDrift",
    "FeatureDrift",
    "Kind",
    "Method",
    "NumericAccumulator",
    "TestChoice",
    "choose_test",
    "compare",
    "dataset_verdict",
    "feature_drift",
    "pick_test",
    "prediction_drift",
]

Kind = Literal["numeric", "categorical"]
Method = Literal["wasserstein", "psi", "ks", "jensenshannon", "chisquare"]
Statistic = Literal["p_value", "distance"]
Direction = Literal["higher is worse", "lower is worse"]
ThresholdSource = Literal["configured", "calibrated", "override"]

NUMERIC_METHODS: frozenset[str] = frozenset({"wasserstein", "psi", "ks", "jensenshannon"})
CATEGORICAL_METHODS: frozenset[str] = frozenset({"jensenshannon", "psi", "chisquare"})
P_VALUE_METHODS: frozenset[str] = frozenset({"ks", "chisquare"})
_P_VALUE_METHODS = P_VALUE_METHODS
_PREDICTION = "prediction"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift test, with what a report needs to draw reference vs current shares.

    ``reference_n``/``current_n`` count non-null values; ``nulls`` and ``invalid`` (out-of-range values
    for numeric features, unknown categories for categorical ones) describe the window. ``bins`` label the
    histogram: for numeric features the profile's bins ``(-inf, e0], …, (ek, +inf)`` with inner ``edges``;
    for categorical features the categories (reference first, then new ones). ``direction`` says which
    way the score is worse; ``threshold_source`` where the threshold came from (``configured``,
    ``calibrated`` from the reference's clean chunks, or a per-feature ``override``), ``clean_max`` the
    largest score of those clean chunks (None without calibration); ``via`` the relation through which the
    feature was found drifted when its own score stayed under its threshold.
    """

    name: str
    kind: Kind
    method: Method
    score: float
    threshold: float
    drifted: bool
    statistic: Statistic
    reference_n: int
    current_n: int
    nulls: int = 0
    invalid: int = 0
    bins: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    reference_shares: tuple[float, ...] = ()
    current_shares: tuple[float, ...] = ()
    direction: Direction = "higher is worse"
    threshold_source: ThresholdSource = "configured"
    clean_max: float | None = None
    # Drifted only through a relation with another feature (monitoring.relations): that relation's name.
    via: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (plain str, int, float, bool and lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DatasetDrift:
    """The dataset verdict: drifted when the (importance-weighted) share of drifted features reaches
    ``threshold``."""

    drifted: bool
    share: float
    threshold: float
    features: int
    drifted_features: tuple[str, ...] = ()
    weighted: bool = False
    results: tuple[FeatureDrift, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict, each feature's result included."""
        return {
            "drifted": self.drifted,
            "share": self.share,
            "threshold": self.threshold,
            "features": self.features,
            "drifted_features": list(self.drifted_features),
            "weighted": self.weighted,
            "results": [r.to_json() for r in self.results],
        }


@dataclass(frozen=True)
class TestChoice:
    """The test a feature gets: method, threshold, where the threshold came from, and the largest
    score of the reference's clean chunks for that method (None when the profile has none)."""

    method: Method
    threshold: float
    source: ThresholdSource = "configured"
    clean_max: float | None = None


def pick_test(
    kind: Kind, current_n: int, cfg: MonitoringSettings, name: str, reference: Mapping[str, Any] | None = None
) -> TestChoice:
    """The test for feature ``name`` with ``current_n`` non-null values, ``reference`` its profile entry.

    ``cfg.features[name]`` wins. Else, when the profile holds clean-chunk scores of the configured
    distance (``cfg.numeric_method``/``cfg.categorical_method``) and ``cfg.calibration_margin`` × their
    maximum exceeds the configured threshold, the feature wanders more than sampling noise: that
    distance decides at that calibrated threshold, whatever the window's size (a p-value would take
    every row as independent and flag the wandering itself). Else p-values (``ks``/``chisquare`` at
    ``cfg.p_value``) up to ``cfg.small_sample_rows`` values, the configured distance above.
    Raises :class:`ConfigError` when an override names a method that does not apply to ``kind``.
    """
    override = cfg.features.get(name)
    if override is not None:
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        if override.method not in allowed:
            raise ConfigError(
                f"monitoring.features.{name}.method: {override.method!r} does not apply to a {kind} "
                f"feature; use one of {', '.join(sorted(allowed))}"
            )
        return TestChoice(override.method, override.threshold, "override")
    method: Method = cfg.numeric_method if kind == "numeric" else cfg.categorical_method
    base = cfg.numeric_threshold if kind == "numeric" else cfg.categorical_threshold
    calibrated = None
    if cfg.calibrated_thresholds and reference is not None:
        calibrated = calibrated_threshold(reference, method, cfg.calibration_margin)
    clean_max = calibrated / cfg.calibration_margin if calibrated is not None else None
    if calibrated is not None and calibrated > base:
        return TestChoice(method, calibrated, "calibrated", clean_max)
    if current_n <= cfg.small_sample_rows:
        return TestChoice("ks" if kind == "numeric" else "chisquare", cfg.p_value, "configured", None)
    return TestChoice(method, base, "configured", clean_max)


def choose_test(
    kind: Kind, current_n: int, cfg: MonitoringSettings, name: str, reference: Mapping[str, Any] | None = None
) -> tuple[Method, float]:
    """:func:`pick_test`'s method and threshold."""
    choice = pick_test(kind, current_n, cfg, name, reference)
    return choice.method, choice.threshold


def compare(
    name: str, accumulator: NumericAccumulator | CategoricalAccumulator, *, method: Method, threshold: float
) -> FeatureDrift:
    """Test the window counted by ``accumulator`` against the reference profile it was built from.

    Raises :class:`DataError` when the window or the reference has no non-null value for ``name``, and
    ``ValueError`` for a method that does not apply to the accumulator's kind (a bug: see
    :func:`choose_test`).
    """
    if accumulator.n == 0 or accumulator.reference_n == 0:
        side = "window" if accumulator.n == 0 else "reference profile"
        raise DataError(f"no non-null values of {name!r} in the {side}; its drift cannot be tested")
    if isinstance(accumulator, NumericAccumulator):
        return _compare_numeric(name, accumulator, method, threshold)
    return _compare_categorical(name, accumulator, method, threshold)


def feature_drift(
    name: str,
    accumulator: NumericAccumulator | CategoricalAccumulator,
    cfg: MonitoringSettings,
    *,
    p_value_tests: int = 1,
) -> FeatureDrift:
    """:func:`compare` with the test :func:`pick_test` picks for this feature, window and profile.

    ``p_value_tests`` is how many features of the window are judged by a p-value: a configured
    ``p_value`` threshold is split among them (Bonferroni), so ``p_value`` is the chance that a clean
    window flags *any* of them, not each — nine tests at 0.05 flagged a clean window one day in three.
    """
    kind: Kind = "numeric" if isinstance(accumulator, NumericAccumulator) else "categorical"
    choice = pick_test(kind, accumulator.n, cfg, name, accumulator.reference)
    threshold = choice.threshold
    if choice.method in _P_VALUE_METHODS and choice.source == "configured":
        threshold /= max(p_value_tests, 1)
    result = compare(name, accumulator, method=choice.method, threshold=threshold)
    return dataclasses.replace(result, threshold_source=choice.source, clean_max=choice.clean_max)


def prediction_drift(accumulator: NumericAccumulator, cfg: MonitoringSettings) -> FeatureDrift:
    """Drift of the score distribution; ``accumulator`` is built from the profile's ``prediction`` entry.

    ``cfg.prediction_method``/``cfg.prediction_threshold`` decide above ``cfg.small_sample_rows`` scores;
    at or below it the Kolmogorov–Smirnov p-value does, as for features: on a few hundred scores of a
    rare-event model, a handful of high scores moves any distance past its threshold.
    """
    if accumulator.n <= cfg.small_sample_rows:
        return compare(_PREDICTION, accumulator, method="ks", threshold=cfg.p_value)
    return compare(_PREDICTION, accumulator, method=cfg.prediction_method, threshold=cfg.prediction_threshold)


def dataset_verdict(results: Sequence[FeatureDrift], cfg: MonitoringSettings) -> DatasetDrift:
    """The share of drifted features, weighted by ``cfg.importance`` (a feature not named weighs 1).

    The dataset drifts when the share reaches ``cfg.drift_share``. Prediction drift is not a feature:
    leave it out of ``results``.
    """
    weights = np.array([cfg.importance.get(r.name, 1.0) for r in results], dtype=np.float64)
    if np.any(weights < 0):
        raise ConfigError("monitoring.importance: weights must not be negative")
    flags = np.array([r.drifted for r in results], dtype=bool)
    total = float(weights.sum())
    share = float(weights[flags].sum() / total) if total > 0 else 0.0
    return DatasetDrift(
        # A relative tolerance, so weights summing to 0.5 in floating point still meet a 0.5 threshold.
        drifted=bool(results) and share >= cfg.drift_share * (1 - 1e-12),
        share=share,
        threshold=cfg.drift_share,
        features=len(results),
        drifted_features=tuple(r.name for r in results if r.drifted),
        weighted=bool(cfg.importance),
        results=tuple(results),
    )


def _bin_labels(edges: Sequence[float]) -> tuple[str, ...]:
    if not edges:
        return ("all",)
    inner = [f"({a:.4g}, {b:.4g}]" for a, b in itertools.pairwise(edges)]
    return (f"≤ {edges[0]:.4g}", *inner, f"> {edges[-1]:.4g}")


def _compare_numeric(name: str, acc: NumericAccumulator, method: Method, threshold: float) -> FeatureDrift:
    reference = shares(acc.reference.get("counts", []))
    current = shares(acc.bin_counts())
    if method == "wasserstein":
        std = max(float(acc.reference.get("std", 0.0)), STD_FLOOR)
        score = acc.wasserstein_distance() / std
    elif method == "psi":
        score = psi(reference, current)
    elif method == "jensenshannon":
        score = js_distance(reference, current)
    elif method == "ks":
        effective = round(acc.reference_n * acc.n / (acc.reference_n + acc.n))
        score = float(sps.distributions.kstwo.sf(acc.ks_statistic(), max(effective, 1)))
    else:
        raise ValueError(f"{method!r} does not apply to the numeric feature {name!r}")
    edges = tuple(float(e) for e in acc.edges)
    statistic, drifted = _verdict(name, method, score, threshold)
    return FeatureDrift(
        name=name,
        kind="numeric",
        direction=_direction(statistic),
        method=method,
        score=score,
        threshold=threshold,
        drifted=drifted,
        statistic=statistic,
        reference_n=acc.reference_n,
        current_n=acc.n,
        nulls=acc.nulls,
        invalid=acc.out_of_range,
        bins=_bin_labels(edges),
        edges=edges,
        reference_shares=_floats(reference),
        current_shares=_floats(current),
    )


def _compare_categorical(
    name: str, acc: CategoricalAccumulator, method: Method, threshold: float
) -> FeatureDrift:
    categories = [*acc.reference_counts, *sorted(c for c in acc.counts if c not in acc.reference_counts)]
    ref_counts = np.array([acc.reference_counts.get(c, 0) for c in categories], dtype=np.float64)
    cur_counts = np.array([acc.counts.get(c, 0) for c in categories], dtype=np.float64)
    reference, current = shares(ref_counts), shares(cur_counts)
    if method == "jensenshannon":
        score = js_distance(reference, current)
    elif method == "psi":
        score = psi(reference, current)
    elif method == "chisquare":
        score = _chisquare_p(ref_counts, cur_counts)
    else:
        raise ValueError(f"{method!r} does not apply to the categorical feature {name!r}")
    statistic, drifted = _verdict(name, method, score, threshold)
    return FeatureDrift(
        name=name,
        kind="categorical",
        direction=_direction(statistic),
        method=method,
        score=score,
        threshold=threshold,
        drifted=drifted,
        statistic=statistic,
        reference_n=acc.reference_n,
        current_n=acc.n,
        nulls=acc.nulls,
        invalid=acc.unknown,
        bins=tuple(categories),
        reference_shares=_floats(reference),
        current_shares=_floats(current),
    )


def _chisquare_p(reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]) -> float:
    """Pearson's goodness-of-fit p-value of ``current`` counts against the reference's shares.

    The statistic is scaled by ``m/(m+n)`` (reference and current sizes), which turns it into the
    two-sample homogeneity statistic when neither category share is tiny: the reference is a sample
    too, like the effective size of the Kolmogorov–Smirnov test.
    """
    if reference.size < 2:
        return 1.0
    # A category the reference never saw is expected at half a count of it, so it weighs heavily
    # without making the statistic infinite.
    expected_share = shares(np.where(reference > 0, reference, 0.5))
    m, n = float(reference.sum()), float(current.sum())
    expected = expected_share * n
    statistic = float(np.sum((current - expected) ** 2 / expected)) * m / (m + n)
    return float(sps.chi2.sf(statistic, reference.size - 1))


def _verdict(name: str, method: Method, score: float, threshold: float) -> tuple[Statistic, bool]:
    if not math.isfinite(score):
        raise DataError(f"the {method} drift score of {name!r} is not finite")
    if method in _P_VALUE_METHODS:
        return "p_value", score < threshold
    return "distance", score > threshold


def _direction(statistic: Statistic) -> Direction:
    return "lower is worse" if statistic == "p_value" else "higher is worse"


def _floats(values: npt.NDArray[np.float64]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
