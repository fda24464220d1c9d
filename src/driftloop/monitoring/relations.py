"""Relations in the monitor: test each profiled ``b − a`` difference and attribute its drift.

A relation (:mod:`driftloop.core.relations`) drifts when one of its members moved and the other did not
follow: a sensor offset or a noisier sensor, where the weather would move both. Which member moved a
single window cannot prove (an offset of the air reads like an opposite offset of the process on a day
the weather moved by as much), so the drift goes to the member farther from its own reference, measured
in its own threshold (:func:`excess`): the likelier explanation, since the weather's day-to-day wander is
what each member's threshold was calibrated on. That member is reported drifted, ``via`` the relation.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from driftloop.monitoring.stats import FeatureDrift, NumericAccumulator, feature_drift

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import numpy.typing as npt

    from driftloop.settings import MonitoringSettings

__all__ = ["Relation", "attribute", "excess"]


class Relation:
    """One profiled relation ``b − a``: its accumulator, fed with the members' cleaned values."""

    def __init__(self, name: str, reference: Mapping[str, Any]) -> None:
        self.name = name
        self.a, self.b = (str(m) for m in reference["of"])
        self.acc = NumericAccumulator(reference)

    def update(self, values: Mapping[str, npt.NDArray[np.float64]]) -> None:
        """Count ``b − a`` for one chunk (``values``: each member's floats, violations already NaN)."""
        if self.a in values and self.b in values:
            self.acc.update(values[self.b] - values[self.a])

    def test(self, cfg: MonitoringSettings) -> FeatureDrift | None:
        """The relation's drift test; None with fewer than ``cfg.min_samples`` values in both members."""
        if self.acc.n < cfg.min_samples or self.acc.reference_n == 0:
            return None
        return feature_drift(self.name, self.acc, cfg)


def excess(result: FeatureDrift) -> float:
    """How far a score is toward or past its threshold, where higher is worse (1: the threshold)."""
    if result.direction == "lower is worse":
        return result.threshold / max(result.score, 1e-300)
    return result.score / result.threshold if result.threshold > 0 else 0.0


def attribute(
    features: Sequence[FeatureDrift],
    relations: Sequence[FeatureDrift],
    members: Mapping[str, tuple[str, str]],
) -> tuple[FeatureDrift, ...]:
    """``features`` with each drifted relation's drift given to the member of larger :func:`excess`
    (``drifted`` and ``via`` set), unless a member already drifted on its own."""
    by_name = {f.name: f for f in features}
    for relation in relations:
        if not relation.drifted:
            continue
        pair = [by_name[m] for m in members[relation.name] if m in by_name]
        if not pair or any(f.drifted for f in pair):
            continue
        culprit = max(pair, key=excess)
        by_name[culprit.name] = dataclasses.replace(culprit, drifted=True, via=relation.name)
    return tuple(by_name[f.name] for f in features)
