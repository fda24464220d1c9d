"""A model's label set: what its ground truth may be, for ``POST /v1/feedback`` and for monitoring.

A classification model scores one probability per row (a binary cross-entropy model), so its labels
are 0 and 1; JSON ``true``/``false`` are read as 1/0, the only other spelling of a binary outcome that
is unambiguous. A regression model's labels are finite numbers within a band, in this order:

1. configured: ``serving.label_ranges[<model>]``, else ``serving.label_range``;
2. derived from the training target recorded in the model's reference profile (``target``): its
   observed ``[min, max]`` widened by the width of that range on each side;
3. for a model trained before the profile recorded its target, the same from its hold-out
   predictions (``prediction``);
4. otherwise any finite number.

The band is wide on purpose: it exists to refuse labels no plausible process produces (``1e300``, a
sign or unit error of orders of magnitude), never to judge an unusual but real value. See
``docs/decisions/0041-feedback-contract-and-signed-ids.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy.typing as npt

__all__ = ["TASK_TAG", "LabelSpec", "Task"]

Task = Literal["classification", "regression"]
# The training run's tag naming its task (pipeline.modeling writes it).
TASK_TAG = "driftloop.task"


@dataclass(frozen=True)
class LabelSpec:
    """The labels a model accepts: 0/1 for classification, ``[low, high]`` (finite) for regression.

    ``origin`` says where a regression band came from (shown in errors and reports).
    """

    task: Task = "classification"
    low: float = -math.inf
    high: float = math.inf
    origin: str = ""

    @classmethod
    def derive(
        cls,
        task: str | None,
        profile: Mapping[str, Any] | None = None,
        configured: tuple[float, float] | None = None,
    ) -> LabelSpec:
        """The label set of a model of ``task`` (the run's ``driftloop.task`` tag; anything but
        ``regression`` is classification, as for models trained before the tag existed), with its
        reference ``profile`` and a ``configured`` regression band (see the module docstring)."""
        if task != "regression":
            return cls()
        if configured is not None:
            return cls("regression", float(configured[0]), float(configured[1]), "configured")
        for key, what in (("target", "the training target"), ("prediction", "the hold-out predictions")):
            summary = (profile or {}).get(key)
            low, high = _bounds(summary)
            if low is not None and high is not None:
                width = high - low or max(abs(low), abs(high), 1.0)
                origin = f"{what} ranged over [{low:.6g}, {high:.6g}], widened by its width on each side"
                return cls("regression", low - width, high + width, origin)
        return cls("regression", origin="no recorded range: any finite number")

    @property
    def expected(self) -> str:
        """What a label must be, for messages."""
        if self.task == "classification":
            return "0 or 1 (or false/true) for this classification model"
        if math.isinf(self.low) and math.isinf(self.high):
            return "a finite number for this regression model"
        band = f"[{self.low:.6g}, {self.high:.6g}]"
        return f"a finite number within {band} for this regression model ({self.origin})"

    def coerce(self, value: Any) -> float | None:
        """``value`` (as JSON decoded it) as the label stored, or None when it is not in the label set."""
        if self.task == "classification":
            if value is True or value is False:
                return float(value)
            if type(value) in (int, float) and value in (0, 1):
                return float(value)
            return None
        if type(value) is bool or not isinstance(value, int | float):
            return None
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            return None
        return number if math.isfinite(number) and self.low <= number <= self.high else None

    def valid(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Which of ``values`` (stored labels) belong to the label set."""
        if self.task == "classification":
            return np.asarray((values == 0) | (values == 1))
        with np.errstate(invalid="ignore"):
            return np.asarray(np.isfinite(values) & (values >= self.low) & (values <= self.high))


def _bounds(summary: Any) -> tuple[float | None, float | None]:
    if not isinstance(summary, dict):
        return None, None
    low, high = _finite(summary.get("min")), _finite(summary.get("max"))
    return (low, high) if low is not None and high is not None else (None, None)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
