"""Validation against the configured schema, with a reason for every rejected row.

Nothing is dropped silently: each input row ends up either in ``valid`` (typed) or in ``rejected``
(original text, plus ``_reasons``), and ``reasons`` counts rejections per reason. The checks run as Arrow
compute kernels over whole columns, so a million rows take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.core.transform import FALSE_TEXTS, TRUE_TEXTS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.settings import ColumnSpec

__all__ = ["REASONS_COLUMN", "ValidationResult", "as_string_table", "validate"]

REASONS_COLUMN = "_reasons"
_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_ISO_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"  # date
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?"  # time, seconds and fraction optional
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"  # zone
)

Mask = np.ndarray  # one bool per row


@dataclass
class ValidationResult:
    """The split of one batch. ``valid`` has typed columns; ``rejected`` keeps the original strings."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    reasons: dict[str, int]
    rows_in: int

    @property
    def bad_share(self) -> float:
        return len(self.rejected) / self.rows_in if self.rows_in else 0.0


def as_string_table(frame: pd.DataFrame | pa.Table) -> pa.Table:
    """``frame`` with every column as Arrow strings (already-Arrow string tables pass through)."""
    if isinstance(frame, pa.Table):
        return frame
    arrays = {}
    for name in frame.columns:
        values = [
            None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in frame[name].tolist()
        ]
        arr = pa.array(values, from_pandas=True)
        arrays[str(name)] = arr if pa.types.is_integer(arr.type) and name == "_row" else arr.cast(pa.string())
    return pa.table(arrays)


def validate(
    frame: pd.DataFrame | pa.Table,
    columns: Sequence[ColumnSpec],
    *,
    label: tuple[str, pa.Array] | None = None,
    label_kind: Literal["binary", "numeric"] = "binary",
) -> ValidationResult:
    """Type and check ``frame`` (text columns) against ``columns``.

    ``label``, when given, is ``(target name, string array aligned with frame)``: a known target must be
    0 or 1 (``label_kind="binary"``) or a finite number (``"numeric"``, regression). A missing label is
    *not* a data error; callers count unlabeled rows themselves.
    """
    table = as_string_table(frame)
    n = table.num_rows
    checks: list[tuple[str, Mask]] = []
    typed: dict[str, pa.Array] = {}
    for spec in columns:
        typed[spec.name], found = _check_column(_combine(table.column(spec.name)), spec)
        checks.extend(found)
    id_col = next((c.name for c in columns if c.role == "id"), None)
    if id_col is not None and n:
        ids = pd.Series(_combine(table.column(id_col)).to_numpy(zero_copy_only=False))
        checks.append(
            (f"{id_col}: duplicate", ids.duplicated(keep="first").to_numpy() & ids.notna().to_numpy())
        )
    if label is not None:
        name, values = label
        text = pc.utf8_trim_whitespace(_combine(values).cast(pa.string()))
        known = _np(pc.is_valid(text))
        if label_kind == "binary":
            accepted = pc.is_in(text, value_set=pa.array(["0", "1", "0.0", "1.0"]))
            reason = f"{name}: not 0 or 1"
        else:
            accepted = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
            reason = f"{name}: not a number"
        numeric = pc.cast(pc.if_else(accepted, text, None), pa.float64())
        numeric = pc.if_else(pc.fill_null(pc.is_finite(numeric), False), numeric, None)
        checks.append((reason, known & ~_np(pc.is_valid(numeric))))
        typed[name] = numeric

    matrix = np.column_stack([mask for _, mask in checks]) if checks else np.zeros((n, 0), dtype=bool)
    bad = np.asarray(matrix.any(axis=1), dtype=bool) if n else np.zeros(0, dtype=bool)
    labels = [name for name, _ in checks]
    counts = matrix.sum(axis=0) if n else np.zeros(len(labels), dtype=int)
    reasons = {labels[j]: int(counts[j]) for j in range(len(labels)) if counts[j]}

    good = pa.array(~bad)
    extras = {c: table.column(c) for c in table.column_names if c.startswith("_")}
    valid = pa.table({**typed, **extras}).filter(good).to_pandas()
    rejected = table.filter(pa.array(bad)).to_pandas()
    rejected[REASONS_COLUMN] = ["; ".join(labels[j] for j in np.flatnonzero(row)) for row in matrix[bad]]
    return ValidationResult(valid=valid, rejected=rejected, reasons=reasons, rows_in=n)


def _check_column(raw: pa.Array, spec: ColumnSpec) -> tuple[pa.Array, list[tuple[str, Mask]]]:
    text = pc.utf8_trim_whitespace(raw.cast(pa.string()))
    missing = _np(pc.or_kleene(pc.is_null(text), pc.equal(text, "")))
    checks: list[tuple[str, Mask]] = []
    if not spec.nullable:
        checks.append((f"{spec.name}: missing", missing))
    name = spec.name
    present = pc.if_else(pa.array(missing), None, text)
    if spec.type in ("float", "int"):
        parses = pc.fill_null(pc.match_substring_regex(present, _NUMBER), False)
        values = pc.cast(pc.if_else(parses, present, None), pa.float64())
        finite = _np(pc.fill_null(pc.is_finite(values), False))
        values = pc.if_else(pa.array(finite), values, None)
        checks.append((f"{name}: not a number", ~missing & ~finite))
        arr = values.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            if spec.type == "int":
                checks.append((f"{name}: not an integer", finite & (np.mod(arr, 1) != 0)))
            if spec.min is not None:
                checks.append((f"{name}: below {spec.min:g}", finite & (arr < spec.min)))
            if spec.max is not None:
                checks.append((f"{name}: above {spec.max:g}", finite & (arr > spec.max)))
        return values, checks
    if spec.type == "timestamp":
        stamps, unparsed = _timestamps(present)
        checks.append((f"{name}: not a timestamp", ~missing & unparsed))
        return stamps, checks
    if spec.type == "bool":
        # The transform's own vocabulary (core.transform), typed to its canonical "true"/"false".
        lower = pc.utf8_lower(present)
        truthy = pc.is_in(lower, value_set=pa.array(sorted(TRUE_TEXTS)))
        falsy = pc.is_in(lower, value_set=pa.array(sorted(FALSE_TEXTS)))
        typed = pc.if_else(truthy, "true", pc.if_else(falsy, "false", None))
        checks.append((f"{name}: not a boolean", ~missing & ~_np(pc.is_valid(typed))))
        return typed, checks
    if spec.allowed is not None:
        ok = _np(pc.fill_null(pc.is_in(present, value_set=pa.array(list(spec.allowed), pa.string())), False))
        checks.append((f"{name}: not one of {'/'.join(spec.allowed)}", ~missing & ~ok))
    return present, checks


def _timestamps(present: pa.Array) -> tuple[pa.Array, Mask]:
    """ISO 8601 text → UTC timestamps; returns the array and a mask of present values that did not parse."""
    shaped = pc.fill_null(pc.match_substring_regex(present, _ISO_TIME), False)
    candidates = pc.if_else(shaped, present, None)
    try:
        stamps = pc.cast(candidates, pa.timestamp("ms", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Well-shaped but impossible (2026-13-45) or a format Arrow's cast refuses: decide per value.
        parsed = pd.to_datetime(
            pd.Series(candidates.to_pylist(), dtype=object), utc=True, errors="coerce", format="ISO8601"
        )
        naive = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[ms]")
        stamps = pa.array(naive, pa.timestamp("ms"), from_pandas=True).cast(pa.timestamp("ms", tz="UTC"))
    unparsed = _np(pc.is_valid(present)) & ~_np(pc.is_valid(stamps))
    return stamps, unparsed


def _combine(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _np(mask: pa.Array | pa.ChunkedArray) -> Mask:
    return np.asarray(_combine(mask).to_numpy(zero_copy_only=False), dtype=bool)
