"""A window's counts: every accumulator one monitoring pass fills, fed chunk by chunk, mergeable.

:func:`driftloop.monitoring.assess.assess` streams a window through one :class:`WindowTally`; the Ray
Data engine (:mod:`driftloop.monitoring.ray_window`) fills one per block on the cluster and merges them
here. Merging adds the same counts a single pass would have made (bin counts, category counts, nulls,
violations, labelled rows), so both give the same verdicts; only float sums (the Wasserstein tails)
may differ in the last bits with the order of addition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.core.labels import LabelSpec
from driftloop.errors import DataError
from driftloop.monitoring.decay import LabelledRows
from driftloop.monitoring.labels import LabelBook
from driftloop.monitoring.relations import Relation
from driftloop.monitoring.stats import CategoricalAccumulator, NumericAccumulator

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import numpy.typing as npt

    from driftloop.monitoring.stats import Kind
    from driftloop.monitoring.window import CaptureChunk
    from driftloop.settings import ColumnSpec

__all__ = ["FeatureTally", "WindowTally"]


class FeatureTally:
    """One profiled feature: its accumulator plus the schema violations kept out of it."""

    def __init__(
        self, name: str, reference: Mapping[str, Any], spec: ColumnSpec | None, levels: Iterable[str] | None
    ) -> None:
        self.name = name
        self.reference = reference
        self.numeric = reference.get("kind") == "numeric"
        self.kind: Kind = "numeric" if self.numeric else "categorical"
        self.low = spec.min if spec is not None else None
        self.high = spec.max if spec is not None else None
        self.allowed = frozenset(spec.allowed) if spec is not None and spec.allowed else None
        # The levels the model knows: a value outside them is accepted but scored as unknown (<other>).
        known = self.allowed if levels is None else frozenset(levels)
        self.acc: NumericAccumulator | CategoricalAccumulator = (
            NumericAccumulator(reference) if self.numeric else CategoricalAccumulator(reference, known)
        )
        self.out_of_range = 0  # numeric values outside [min, max]
        self.invalid = 0  # values of the wrong type, categories not allowed
        self.last: npt.NDArray[np.float64] | None = None  # the last chunk's cleaned numeric values

    def update(self, values: npt.NDArray[Any] | None, rows: int, invalid: int) -> None:
        """Count one chunk; a numeric feature keeps its cleaned values in ``last`` for the relations."""
        self.invalid += invalid
        if values is None:  # the field was not in the captured inputs at all
            self.acc.update(np.full(rows, np.nan) if self.numeric else np.full(rows, None, dtype=object))
            self.last = np.full(rows, np.nan)
            return
        if self.numeric:
            x = np.asarray(values, dtype=np.float64)
            bad = np.zeros(x.shape[0], dtype=np.bool_)
            with np.errstate(invalid="ignore"):
                if self.low is not None:
                    bad |= x < self.low
                if self.high is not None:
                    bad |= x > self.high
            if bad.any():
                self.out_of_range += int(bad.sum())
                x = np.where(bad, np.nan, x)
            self.acc.update(x)
            self.last = x
            return
        series = pd.Series(values, dtype=object)
        if self.allowed is not None:
            present = series.notna()
            bad_categories = present & ~series.astype(str).isin(self.allowed)
            if bad_categories.any():
                self.invalid += int(bad_categories.sum())
                series = series.where(~bad_categories, None)
        self.acc.update(series)

    @property
    def nulls(self) -> int:
        """Null or missing values (the accumulator's nulls, less the values set aside as violations)."""
        return self.acc.nulls - self.out_of_range - self.invalid

    def merge(self, other: FeatureTally) -> None:
        """Add ``other``'s counts (another part of the same window, same reference)."""
        self.acc.merge(other.acc)  # type: ignore[arg-type]  # same reference: same accumulator type
        self.out_of_range += other.out_of_range
        self.invalid += other.invalid


class WindowTally:
    """Everything one pass counts over a window (see :func:`~driftloop.monitoring.assess.assess` for
    the arguments). Raises :class:`DataError` when the profile has no features."""

    def __init__(
        self,
        profile: Mapping[str, Any],
        schema: Sequence[ColumnSpec],
        *,
        levels: Mapping[str, Iterable[str]] | None = None,
        labels: Mapping[str, float] | LabelBook | None = None,
        label_spec: LabelSpec | None = None,
    ) -> None:
        references: Mapping[str, Any] = profile.get("features", {})
        if not references:
            raise DataError("the reference profile has no features; the model cannot be monitored")
        specs = {spec.name: spec for spec in schema}
        self.id_column = next((spec.name for spec in schema if spec.role == "id"), None)
        model_levels = levels or {}
        self.features = [
            FeatureTally(name, ref, specs.get(name), model_levels.get(name))
            for name, ref in references.items()
        ]
        self.relations = [
            Relation(name, entry)
            for name, entry in profile.get("relations", {}).items()
            if all(member in references for member in entry.get("of", ()))
        ]
        self.scores = NumericAccumulator(profile["prediction"]) if "prediction" in profile else None
        self.spec = label_spec or LabelSpec()
        book = labels
        if labels is not None and not isinstance(labels, LabelBook):
            book = LabelBook.of(labels, self.spec)
        self.book: LabelBook | None = book  # type: ignore[assignment]  # a LabelBook or None by now
        self.labelled = LabelledRows(self.book) if self.book is not None else None
        self.rows = self.malformed = self.fallback = self.no_score = 0
        self.first: np.datetime64 | None = None
        self.last: np.datetime64 | None = None

    def update(self, chunk: CaptureChunk) -> None:
        """Count one chunk of captured predictions."""
        n = chunk.rows
        if n == 0:
            return
        self.rows += n
        self.malformed += chunk.malformed
        for feature in self.features:
            feature.update(chunk.columns.get(feature.name), n, chunk.invalid.get(feature.name, 0))
        cleaned = {f.name: f.last for f in self.features if f.numeric and f.last is not None}
        for relation in self.relations:
            relation.update(cleaned)
        scored = ~chunk.fallback & np.isfinite(chunk.score)
        self.fallback += int(chunk.fallback.sum())
        self.no_score += int(np.count_nonzero(~chunk.fallback & ~np.isfinite(chunk.score)))
        if self.scores is not None:
            self.scores.update(chunk.score[scored])
        if self.labelled is not None:
            column = self.id_column
            ids = chunk.columns.get(column) if column is not None else None
            self.labelled.add(
                chunk.prediction_id[scored], ids[scored] if ids is not None else None, chunk.score[scored]
            )
        known = chunk.ts[~np.isnat(chunk.ts)]
        if known.size:
            self.first = known.min() if self.first is None else min(self.first, known.min())
            self.last = known.max() if self.last is None else max(self.last, known.max())

    def merge(self, other: WindowTally) -> None:
        """Add ``other``'s counts: another part of the same window, counted from the same profile."""
        for mine, theirs in zip(self.features, other.features, strict=True):
            mine.merge(theirs)
        for relation, counted in zip(self.relations, other.relations, strict=True):
            relation.acc.merge(counted.acc)
        if self.scores is not None and other.scores is not None:
            self.scores.merge(other.scores)
        if self.labelled is not None and other.labelled is not None:
            self.labelled.merge(other.labelled)
        self.rows += other.rows
        self.malformed += other.malformed
        self.fallback += other.fallback
        self.no_score += other.no_score
        for moment in (other.first, other.last):
            if moment is not None:
                self.first = moment if self.first is None else min(self.first, moment)
                self.last = moment if self.last is None else max(self.last, moment)
