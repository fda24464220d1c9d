"""The confidence sequence: it covers the true mean at every look with the stated probability, adapts
to the variance, and a paired difference of losses is judged on its own scale."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.monitoring.sequential import confidence_sequence, paired_difference_interval


def _covered_at_every_look(x: np.ndarray, mean: float, alpha: float, looks: list[int]) -> bool:
    return all((i := confidence_sequence(x[:n], alpha)).low <= mean <= i.high for n in looks)


def test_coverage_holds_at_every_look_not_just_at_the_end() -> None:
    # 400 sequences of Bernoulli(0.3), each looked at 20 times: the stated 5 % bounds the share of
    # sequences whose interval ever misses the mean (a fixed-n interval looked at 20 times would not).
    rng = np.random.default_rng(0)
    looks = list(range(25, 501, 25))
    misses = sum(
        not _covered_at_every_look(rng.binomial(1, 0.3, 500).astype(float), 0.3, 0.05, looks)
        for _ in range(400)
    )
    assert misses / 400 <= 0.05


def test_the_interval_narrows_with_data_and_faster_for_low_variance() -> None:
    rng = np.random.default_rng(1)
    wide = confidence_sequence(rng.uniform(0, 1, 200), 0.05)
    more = confidence_sequence(rng.uniform(0, 1, 5000), 0.05)
    assert more.high - more.low < (wide.high - wide.low) / 3
    # Low variance: narrower at the same n (the bets' cap, 1/2, bounds how much narrower at small n).
    quiet = confidence_sequence(rng.normal(0.5, 0.01, 200).clip(0, 1), 0.05)
    assert quiet.high - quiet.low < (wide.high - wide.low) / 1.5
    assert quiet.low <= 0.5 <= quiet.high
    quieter = confidence_sequence(rng.normal(0.5, 0.01, 5000).clip(0, 1), 0.05)
    assert quieter.high - quieter.low < (more.high - more.low) / 4


def test_paired_difference_of_losses() -> None:
    rng = np.random.default_rng(2)
    y = rng.binomial(1, 0.1, 3000).astype(float)
    good = np.clip(0.7 * y + rng.normal(0.1, 0.05, y.size), 0, 1)
    bad = np.clip(0.2 * y + rng.normal(0.1, 0.05, y.size), 0, 1)
    better = paired_difference_interval((good - y) ** 2, (bad - y) ** 2, 0.05)
    assert better.high < 0  # the good model's Brier loss is surely lower
    worse = paired_difference_interval((bad - y) ** 2, (good - y) ** 2, 0.05)
    assert worse.low > 0
    same = paired_difference_interval((good - y) ** 2, (good - y) ** 2, 0.05)
    assert same.low <= 0 <= same.high
    assert same.n == y.size


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        confidence_sequence([0.5, 1.5], 0.05)
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence([0.5], 1.0)
    empty = confidence_sequence([], 0.05)
    assert (empty.low, empty.high, empty.n) == (0.0, 1.0, 0)
