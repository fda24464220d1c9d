"""A model's label set: 0/1 for a classifier, a finite band for a regression model, and where the band
comes from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from driftloop.core.labels import LabelSpec
from driftloop.core.profile import build_profile


@pytest.mark.parametrize(
    ("value", "label"),
    [(0, 0.0), (1, 1.0), (0.0, 0.0), (1.0, 1.0), (True, 1.0), (False, 0.0)]
    + [(v, None) for v in (-5, 0.5, 7, 2, 1e300, math.nan, math.inf, "1", None, [1], {"v": 1}, 10**400)],
)
def test_a_classifier_takes_0_and_1_and_booleans_as_them(value: Any, label: float | None) -> None:
    assert LabelSpec.derive("classification").coerce(value) == label


def test_a_model_without_a_task_tag_is_a_classifier() -> None:
    assert LabelSpec.derive(None) == LabelSpec()


def test_the_regression_band_comes_from_the_configuration_then_the_target_then_the_predictions() -> None:
    profile = build_profile(
        {}, numeric=[], categorical=[], scores=np.array([2.0, 3.0]), target=np.array([4.0, 10.0])
    )
    configured = LabelSpec.derive("regression", profile, (-1.0, 1.0))
    assert (configured.low, configured.high, configured.origin) == (-1.0, 1.0, "configured")
    target = LabelSpec.derive("regression", profile)
    assert (target.low, target.high) == (-2.0, 16.0)  # [4, 10] widened by its width, 6, each side
    assert "the training target ranged over [4, 10]" in target.expected
    del profile["target"]  # a model trained before profiles recorded the target
    predictions = LabelSpec.derive("regression", profile)
    assert (predictions.low, predictions.high) == (1.0, 4.0)
    assert "the hold-out predictions" in predictions.origin
    anything = LabelSpec.derive("regression", None)
    assert (anything.low, anything.high) == (-math.inf, math.inf)
    assert anything.expected == "a finite number for this regression model"


def test_a_constant_target_still_gets_a_band() -> None:
    spec = LabelSpec.derive("regression", {"target": {"min": 5.0, "max": 5.0}})
    assert (spec.low, spec.high) == (0.0, 10.0)


@pytest.mark.parametrize(
    ("value", "label"),
    [(3, 3.0), (-2, -2.0), (16.0, 16.0)]
    + [(v, None) for v in (16.5, -2.5, 1e300, -1e300, math.nan, math.inf, True, "3", None, 10**400)],
)
def test_regression_labels_are_finite_numbers_within_the_band(value: Any, label: float | None) -> None:
    spec = LabelSpec("regression", -2.0, 16.0, "test")
    assert spec.coerce(value) == label


def test_stored_labels_are_checked_as_arrays() -> None:
    values = np.array([0.0, 1.0, 7.0, 0.5, math.nan, -1.0])
    assert LabelSpec().valid(values).tolist() == [True, True, False, False, False, False]
    spec = LabelSpec("regression", -1.0, 1.0)
    assert spec.valid(values).tolist() == [True, True, False, True, False, True]
