"""Request rows → validated raw records → model features, with the training transform's own code.

Validation is against the served model's own input contract, its fitted transform
(:class:`~driftloop.core.transform.Transform`): the service accepts what training accepted and refuses
what training quarantined. Every problem is reported with the field it concerns, so a client gets one
422 that says everything that was wrong, never a 500.

- Numbers: a JSON number (not a boolean), finite, whole for integer columns, within the bounds training
  validated; ``null`` where training allowed nulls (it takes the fitted fill value).
- Categories: text, or a whole number for integer-coded categories; an unseen level of an open column is
  accepted and scored in the ``<other>`` bucket (monitoring counts it as unknown); a closed column
  (declared ``allowed`` values) refuses it. Booleans: JSON ``true``/``false`` or the transform's texts.
- Columns training dropped (ids, dates, the target) are accepted and ignored; any other field is refused
  as unknown, so a misspelt field name is never silently scored as a null.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.core.transform import INVALID, CategoricalInput, NumericInput, canonical_category

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np

    from driftloop.core.transform import Transform

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
    """``errors``: the bad fields listed (the first ones, up to the caller's limit); ``total``: all."""

    def __init__(self, errors: list[FieldError], total: int | None = None) -> None:
        self.total = len(errors) if total is None else total
        super().__init__(f"{self.total} invalid field(s)")
        self.errors = errors


@dataclass(frozen=True)
class InputSpec:
    """What a served model accepts: its transform's inputs, plus the columns training dropped."""

    transform: Transform

    @classmethod
    def build(cls, transform: Transform) -> InputSpec:
        return cls(transform)

    @property
    def fields(self) -> list[str]:
        return self.transform.input_names

    def validate(self, rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> None:
        """:class:`InvalidInput` listing the bad fields of every row, the first ``limit`` of them (all
        when None), and counting them all; returns quietly when all are valid."""
        # The quick check only ever says "certainly valid"; anything else (a null, a stranger, a bad
        # value) gets the full check, which decides and names the errors.
        if all(self._row_valid(row) for row in rows):
            return
        self._validate_each(rows, sys.maxsize if limit is None else limit)

    def features(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validated rows → the model's float32 feature matrix (the training transform's code)."""
        return self.transform.encode_records(rows)

    def _row_valid(self, row: Any) -> bool:  # noqa: PLR0911 — one return per rule
        if type(row) is not dict or not row.keys() <= self._known:
            return False
        for name, low, high, integer in self._numbers:
            value = row.get(name)
            if type(value) is not float and type(value) is not int:
                return False  # missing, null, bool, text…
            if not low <= value <= high or not math.isfinite(value):
                return False
            if integer and value % 1:
                return False
        for name, levels in self._closed.items():
            value = row.get(name)  # exact canonical text, or a JSON boolean for a boolean column
            if (type(value) is not str and type(value) is not bool) or value not in levels:
                return False
        for name in self._open:
            value = row.get(name)
            if type(value) is not str or not value or value[0].isspace() or value[-1].isspace():
                return False
        return True

    @functools.cached_property
    def _known(self) -> frozenset[str]:
        return frozenset((*self.transform.input_names, *self.transform.ignored))

    @functools.cached_property
    def _numbers(self) -> tuple[tuple[str, float, float, bool], ...]:
        """(name, lowest, highest, whole numbers only) of each numeric input; unbounded ends are infinite."""
        inf = math.inf
        return tuple(
            (n.name, -inf if n.min is None else n.min, inf if n.max is None else n.max, n.integer)
            for n in self.transform.numeric
        )

    @functools.cached_property
    def _closed(self) -> dict[str, frozenset[Any]]:
        closed: dict[str, frozenset[Any]] = {}
        for c in self.transform.categorical:
            if c.boolean:
                closed[c.name] = frozenset({True, False})
            elif not c.open:
                closed[c.name] = frozenset(c.levels)
        return closed

    @functools.cached_property
    def _open(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.transform.categorical if c.open)

    def _validate_each(self, rows: Sequence[Mapping[str, Any]], limit: int = sys.maxsize) -> None:
        # Errors beyond ``limit`` are counted, not built: a 13 MB body of a million unknown fields made a
        # million error objects (a 79 MB answer, 10-16 s); counting strangers is a set operation.
        errors: list[FieldError] = []
        total = 0
        known = self._known
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                total += 1
                if len(errors) < limit:
                    errors.append(
                        FieldError(i, "", "type", "each instance must be a JSON object of field: value")
                    )
                continue
            strangers = len(row) - len(row.keys() & known)  # iterates the smaller side: the known names
            if strangers:
                total += strangers
                unknown = (FieldError(i, k, "unknown", f"unknown field {k!r}") for k in row if k not in known)
                errors.extend(itertools.islice(unknown, max(limit - len(errors), 0)))
            for spec in self.transform.inputs:
                value = row.get(spec.name, _MISSING)
                found = (
                    _check_number(i, spec, value)
                    if isinstance(spec, NumericInput)
                    else _check_category(i, spec, value)
                )
                if found:
                    total += 1
                    if len(errors) < limit:
                        errors.extend(found)
        if total:
            raise InvalidInput(errors, total)


class _Missing:
    pass


_MISSING = _Missing()


def _check_number(i: int, spec: NumericInput, value: Any) -> list[FieldError]:  # noqa: PLR0911 — one return per rule
    name = spec.name
    if value is _MISSING or value is None:
        if value is None and spec.nullable:
            return []
        return [FieldError(i, name, "missing", f"field {name!r} is required")]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [FieldError(i, name, "type", f"{name} must be a number, got {type(value).__name__}")]
    if not math.isfinite(value):
        return [FieldError(i, name, "type", f"{name} must be a finite number")]
    if spec.integer and value % 1:
        return [FieldError(i, name, "type", f"{name} must be a whole number, got {value}")]
    if spec.min is not None and value < spec.min:
        return [FieldError(i, name, "range", f"{name} {value} is below the minimum {spec.min}")]
    if spec.max is not None and value > spec.max:
        return [FieldError(i, name, "range", f"{name} {value} is above the maximum {spec.max}")]
    return []


def _check_category(i: int, spec: CategoricalInput, value: Any) -> list[FieldError]:
    name = spec.name
    if value is _MISSING:
        return [FieldError(i, name, "missing", f"field {name!r} is required")]
    text = canonical_category(value, spec.boolean)
    if text is None:
        return [] if spec.nullable else [FieldError(i, name, "missing", f"field {name!r} is required")]
    if text is INVALID:
        wanted = "true or false" if spec.boolean else "a string (or a whole number)"
        return [FieldError(i, name, "type", f"{name} must be {wanted}, got {_shown(value)}")]
    if not spec.open and text not in spec.levels:
        return [FieldError(i, name, "category", f"{name} must be one of {list(spec.levels)}, got {value!r}")]
    return []


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"
