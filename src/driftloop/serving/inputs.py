"""Request rows → validated raw records → model features, with the training transform's own code.

Validation is against the served model's inputs (its fitted transform) and the configured raw schema
(types, ranges, allowed values): every problem is reported with the field it concerns, so a client
gets one 422 that says everything that was wrong, never a 500.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from driftloop.data import transform as transform_mod

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np

    from driftloop.data.transform import TransformParams
    from driftloop.settings import ColumnSpec

__all__ = ["FieldError", "InputSpec", "InvalidInput"]


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one row: the 422 body lists these."""

    row: int
    field: str
    kind: str  # missing | type | range | category | unknown
    message: str

    def to_json(self, prefix: str = "instances") -> dict[str, Any]:
        return {"loc": [prefix, self.row, self.field], "type": self.kind, "msg": self.message}


class InvalidInput(Exception):  # noqa: N818 — an outcome of validation, not a program error
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


@dataclass(frozen=True)
class _Numeric:
    name: str
    nullable: bool
    min: float | None
    max: float | None


@dataclass(frozen=True)
class InputSpec:
    """What a served model accepts: its numeric and categorical inputs plus pass-through columns."""

    numeric: tuple[_Numeric, ...]
    categorical: dict[str, tuple[str, ...]]
    passthrough: frozenset[str]
    params: TransformParams

    @classmethod
    def build(cls, params: TransformParams, schema: Sequence[ColumnSpec]) -> InputSpec:
        by_name = {c.name: c for c in schema}
        numeric = tuple(
            _Numeric(n, by_name[n].nullable if n in by_name else True,
                     by_name[n].min if n in by_name else None, by_name[n].max if n in by_name else None)
            for n in params.numeric
        )  # fmt: skip
        categorical = {}
        for name, fitted in params.categorical.items():
            allowed = by_name[name].allowed if name in by_name and by_name[name].allowed else None
            categorical[name] = tuple(allowed) if allowed else tuple(fitted)
        used = {*params.numeric, *params.categorical}
        return cls(numeric, categorical, frozenset(c.name for c in schema if c.name not in used), params)

    @property
    def fields(self) -> list[str]:
        return [n.name for n in self.numeric] + list(self.categorical)

    def validate(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """:class:`InvalidInput` listing every bad field of every row; returns quietly when all are valid."""
        # A few rows are checked one by one faster than column by column. Either quick check only says
        # "certainly valid"; anything else (a null, a bad value) gets the full check, which names errors.
        if len(rows) < 4:
            if all(self._row_valid(row) for row in rows):
                return
        elif self._plainly_valid(rows):
            return
        self._validate_each(rows)

    def _row_valid(self, row: Any) -> bool:
        if type(row) is not dict or not row.keys() <= self._known:
            return False
        for name, low, high in self._ranges:
            value = row.get(name)
            if type(value) is not float and type(value) is not int:
                return False  # missing, null, bool, text…
            if not low <= value <= high or not math.isfinite(value):
                return False
        for name, allowed in self._allowed_sets.items():
            value = row.get(name)
            if type(value) is not str or value not in allowed:
                return False
        return True

    def _plainly_valid(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Column by column, for many rows: True when every row is certainly valid."""
        known = self._known
        if not all(type(row) is dict and row.keys() <= known for row in rows):
            return False
        for name, low, high in self._ranges:
            values = [row.get(name) for row in rows]
            if not all(type(v) is float or type(v) is int for v in values):
                return False
            column = cast("list[float]", values)
            if not all(map(math.isfinite, column)) or min(column) < low or max(column) > high:
                return False
        for name, allowed in self._allowed_sets.items():
            texts = [row.get(name) for row in rows]
            if not all(type(v) is str for v in texts) or not set(texts) <= allowed:  # a list is unhashable
                return False
        return True

    @functools.cached_property
    def _known(self) -> frozenset[str]:
        return frozenset((*self.fields, *self.passthrough))

    @functools.cached_property
    def _ranges(self) -> tuple[tuple[str, float, float], ...]:
        """(name, lowest, highest) of each numeric field; unbounded ends are infinite."""
        inf = math.inf
        return tuple(
            (n.name, -inf if n.min is None else n.min, inf if n.max is None else n.max) for n in self.numeric
        )

    @functools.cached_property
    def _allowed_sets(self) -> dict[str, frozenset[Any]]:
        return {name: frozenset(allowed) for name, allowed in self.categorical.items()}

    def _validate_each(self, rows: Sequence[Mapping[str, Any]]) -> None:
        errors: list[FieldError] = []
        known = self._known
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                errors.append(
                    FieldError(i, "", "type", "each instance must be a JSON object of field: value")
                )
                continue
            errors.extend(FieldError(i, k, "unknown", f"unknown field {k!r}") for k in row if k not in known)
            for spec in self.numeric:
                errors.extend(_check_number(i, spec, row.get(spec.name, _MISSING)))
            for name, allowed in self.categorical.items():
                value = row.get(name, _MISSING)
                if value is _MISSING or value is None:
                    errors.append(FieldError(i, name, "missing", f"field {name!r} is required"))
                elif not isinstance(value, str):
                    errors.append(
                        FieldError(i, name, "type", f"{name} must be a string, got {type(value).__name__}")
                    )
                elif value not in allowed:
                    errors.append(
                        FieldError(
                            i, name, "category", f"{name} must be one of {list(allowed)}, got {value!r}"
                        )
                    )
        if errors:
            raise InvalidInput(errors)

    def features(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validated rows → the model's float32 feature matrix (the training transform's code)."""
        return transform_mod.apply_records(rows, self.params)


class _Missing:
    pass


_MISSING = _Missing()


def _check_number(i: int, spec: _Numeric, value: Any) -> list[FieldError]:  # noqa: PLR0911 — one return per rule
    name = spec.name
    if value is _MISSING or value is None:
        if value is None and spec.nullable:
            return []
        return [FieldError(i, name, "missing", f"field {name!r} is required")]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [FieldError(i, name, "type", f"{name} must be a number, got {type(value).__name__}")]
    if not math.isfinite(value):
        return [FieldError(i, name, "type", f"{name} must be a finite number")]
    if spec.min is not None and value < spec.min:
        return [FieldError(i, name, "range", f"{name} {value} is below the minimum {spec.min}")]
    if spec.max is not None and value > spec.max:
        return [FieldError(i, name, "range", f"{name} {value} is above the maximum {spec.max}")]
    return []
