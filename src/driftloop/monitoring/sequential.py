"""An anytime-valid confidence sequence for the mean of bounded observations, for judging a challenger
in shadow as soon as the evidence suffices (and not before).

A fixed-sample test looked at after every batch of labels inflates its error rate with every look; a
confidence sequence does not: with probability at least ``1 − alpha`` the true mean lies in *every*
interval of the sequence, however often and whenever one looks, so stopping at the first decisive look
keeps the stated error rate. This is the predictable plug-in empirical-Bernstein confidence sequence of
Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting" (JRSS B, 2023),
Theorem 2, for observations in [0, 1]; it adapts to the variance, so near-identical paired losses give
narrow intervals. The running intersection (also valid) is returned. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Interval", "confidence_sequence", "paired_difference_interval"]

_TRUNCATION = 0.5  # the paper's c: bets never stake more than half


@dataclass(frozen=True)
class Interval:
    """``[low, high]`` holds the mean with probability ``≥ 1 − alpha`` at every ``n`` simultaneously."""

    low: float
    high: float
    n: int
    alpha: float


def confidence_sequence(x: npt.ArrayLike, alpha: float) -> Interval:
    """The running-intersection confidence sequence for the mean of ``x`` (each in [0, 1], in arrival
    order) after all of ``x``. Raises ValueError for values outside [0, 1] or alpha outside (0, 1)."""
    values = np.asarray(x, dtype=np.float64)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if values.size == 0:
        return Interval(0.0, 1.0, 0, alpha)
    if np.any((values < 0) | (values > 1)) or not np.all(np.isfinite(values)):
        raise ValueError("confidence_sequence needs observations in [0, 1]")
    n = values.size
    t = np.arange(1, n + 1, dtype=np.float64)
    log_term = math.log(2 / alpha)
    # Running mean and variance estimates, each with a prior pseudo-observation (1/2, 1/4).
    mean = (0.5 + np.cumsum(values)) / (t + 1)  # μ̂_t, t = 1..n
    mean_before = np.concatenate(([0.5], mean[:-1]))  # μ̂_{t-1}
    var = (0.25 + np.cumsum((values - mean) ** 2)) / (t + 1)  # σ̂²_t
    var_before = np.concatenate(([0.25], var[:-1]))  # σ̂²_{t-1}
    # Predictable bets: chosen from what was seen before each observation.
    lam = np.minimum(np.sqrt(2 * log_term / (var_before * t * np.log1p(t))), _TRUNCATION)
    v = 4 * (values - mean_before) ** 2
    psi = (-np.log1p(-lam) - lam) / 4
    lam_sum = np.cumsum(lam)
    center = np.cumsum(lam * values) / lam_sum
    width = (log_term + np.cumsum(v * psi)) / lam_sum
    low = float(np.clip(np.max(center - width), 0.0, 1.0))
    high = float(np.clip(np.min(center + width), 0.0, 1.0))
    return Interval(low, max(low, high), n, alpha)


def paired_difference_interval(new: npt.ArrayLike, old: npt.ArrayLike, alpha: float) -> Interval:
    """The confidence sequence for the mean of ``new − old``, each loss in [0, 1] (so the difference is
    in [−1, 1]), in arrival order."""
    diff = np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64)
    unit = confidence_sequence((diff + 1) / 2, alpha)
    return Interval(2 * unit.low - 1, 2 * unit.high - 1, unit.n, alpha)
