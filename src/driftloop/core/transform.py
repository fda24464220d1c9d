"""The fitted transform: raw tabular rows → the model's float32 features, one definition for every path.

A :class:`Transform` is the model's whole input contract, fitted on training rows and stored with the
model as ``transform.json``: which raw columns it reads (in order, each with its kind, fill value,
scaling or category levels), which columns training dropped and why, and the feature names it
produces. Training, evaluation, the MLflow pyfunc model, the prediction service and monitoring all call
:meth:`Transform.encode` (through :meth:`~Transform.encode_frame` or :meth:`~Transform.encode_records`)
on the same artifact, so a model is scored the same way wherever it runs
(``docs/decisions/0032-transform-artifact.md``).

Every ordered fact lives in a JSON *list*, never in an object's key order, so any JSON writer (sorted
keys or not) round-trips it; :meth:`Transform.from_json` re-derives the feature names and refuses an
artifact whose stored names disagree.

Encoding, per input kind:

- ``numeric``: null → the fitted fill value (training's median), then ``(x − mean) / std``.
- ``categorical`` / ``boolean``: one 0/1 column per level. A null has its own ``<null>`` column when
  training saw nulls in that column. Any other value — a level training never saw, a level too rare to
  keep (fewer than :data:`MIN_LEVEL_ROWS` fitting rows), a null training never saw — goes to the
  ``<other>`` column of an *open* column (no ``allowed`` list). A closed column (declared ``allowed``
  values, booleans) has no ``<other>``: such a value is invalid input.
- Category values are compared as text: surrounding blanks are stripped, an empty string is null and a
  whole number is its integer text (``3`` and ``3.0`` are the level ``"3"``). Booleans accept JSON
  ``true``/``false``, ``0``/``1`` and the texts ``true/false``, ``t/f``, ``yes/no``, ``y/n``, ``1/0``
  in any case.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from driftloop.errors import ConfigError, DataError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from driftloop.settings import ColumnSpec

__all__ = [
    "DERIVED",
    "FALSE_TEXTS",
    "FEATURE_PREFIX",
    "INVALID",
    "MIN_LEVEL_ROWS",
    "NULL_LEVEL",
    "OTHER_LEVEL",
    "TRUE_TEXTS",
    "CategoricalInput",
    "DerivedFeature",
    "DerivedInput",
    "DroppedColumn",
    "InvalidValuesError",
    "NumericInput",
    "Transform",
    "canonical_category",
    "fit",
]

FEATURE_PREFIX = "f_"
NULL_LEVEL = "<null>"
OTHER_LEVEL = "<other>"
# An open column's levels seen in fewer fitting rows than this share the <other> column, so that
# column is learned from real rows and an unseen level at serving time lands on a trained weight.
MIN_LEVEL_ROWS = 5
FORMAT = "driftloop.transform"
FORMAT_VERSION = 2
_RAD_PER_S_PER_RPM = 2 * math.pi / 60
TRUE_TEXTS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TEXTS = frozenset({"false", "f", "no", "n", "0"})


class _Invalid:
    """The canonical form of a value that is not a valid category (a list, a bool in a text column…)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


class InvalidValuesError(DataError):
    """Values the transform cannot encode: the first few, each with its column and row."""

    http_status = 400

    def __init__(self, problems: list[tuple[str, int, Any]]) -> None:
        shown = "; ".join(f"{name} row {row}: {value!r}" for name, row, value in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"invalid input values: {shown}{more}")
        self.problems = problems


@dataclass(frozen=True)
class DerivedFeature:
    """A named feature computed from raw numeric columns."""

    requires: tuple[str, ...]
    compute: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    doc: str


DERIVED: dict[str, DerivedFeature] = {
    "power_w": DerivedFeature(
        ("torque_nm", "rotational_speed_rpm"),
        lambda c: c["torque_nm"] * c["rotational_speed_rpm"] * _RAD_PER_S_PER_RPM,
        "mechanical power [W] = torque × angular speed",
    ),
    "temp_diff_k": DerivedFeature(
        ("process_temperature_k", "air_temperature_k"),
        lambda c: c["process_temperature_k"] - c["air_temperature_k"],
        "process − air temperature [K] (heat dissipation)",
    ),
    "strain_min_nm": DerivedFeature(
        ("tool_wear_min", "torque_nm"),
        lambda c: c["tool_wear_min"] * c["torque_nm"],
        "tool wear × torque [min·Nm] (overstrain)",
    ),
}


@dataclass(frozen=True)
class NumericInput:
    """A raw number: its fill value for nulls, its scaling, and the bounds training validated."""

    name: str
    fill: float
    mean: float
    std: float
    nullable: bool = True
    integer: bool = False
    min: float | None = None
    max: float | None = None
    kind: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class CategoricalInput:
    """A raw category (or boolean): its levels in feature order and how nulls and strangers encode."""

    name: str
    levels: tuple[str, ...]
    nullable: bool = True
    null_level: bool = False  # training saw nulls: they have a column of their own
    open: bool = True  # unseen levels are accepted and share the <other> column
    kind: Literal["categorical", "boolean"] = "categorical"

    @property
    def boolean(self) -> bool:
        return self.kind == "boolean"

    @property
    def columns(self) -> list[str]:
        """The level names of this input's one-hot columns, in order."""
        extra = [NULL_LEVEL] if self.null_level else []
        return [*self.levels, *extra, *([OTHER_LEVEL] if self.open else [])]


@dataclass(frozen=True)
class DerivedInput:
    """A derived feature (:data:`DERIVED`) with its fitted scaling."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class DroppedColumn:
    """A column of the training data that is not a model input: ignored on input, kept for lineage."""

    name: str
    role: str  # id | timestamp | entity | target | text | date
    reason: str


Input = NumericInput | CategoricalInput


def canonical_category(value: Any, boolean: bool = False) -> Any:  # noqa: PLR0911 — one return per rule
    """A raw value as the category text the transform compares: ``None`` for null, :data:`INVALID` for a
    value no category can be (see the module docstring for the rules)."""
    if type(value) is str and not boolean:  # the common case first
        return value.strip() or None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and math.isnan(value):  # NaN is pandas' null
        return None
    if boolean:
        return _canonical_boolean(value)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool | np.bool_):  # a bool is an int to Python, never a category here
        return INVALID
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return INVALID
        return str(int(number)) if number.is_integer() else repr(number)
    return INVALID


def _canonical_boolean(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        return "true" if text in TRUE_TEXTS else "false" if text in FALSE_TEXTS else INVALID
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return "true" if value == 1 else "false"
    return INVALID


def _canonical_column(values: Iterable[Any], boolean: bool) -> np.ndarray:
    texts = [canonical_category(v, boolean) for v in values]
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


@dataclass(frozen=True)
class Transform:
    """The fitted transform (see the module docstring); JSON round-trips exactly."""

    inputs: tuple[Input, ...]
    derived: tuple[DerivedInput, ...] = ()
    dropped: tuple[DroppedColumn, ...] = ()
    target: str | None = None

    @property
    def numeric(self) -> tuple[NumericInput, ...]:
        return tuple(i for i in self.inputs if isinstance(i, NumericInput))

    @property
    def categorical(self) -> tuple[CategoricalInput, ...]:
        """Categorical and boolean inputs."""
        return tuple(i for i in self.inputs if isinstance(i, CategoricalInput))

    @property
    def input_names(self) -> list[str]:
        """The raw columns a caller provides, in the training data's order."""
        return [i.name for i in self.inputs]

    @property
    def ignored(self) -> frozenset[str]:
        """Columns training dropped (ids, dates, the target…): accepted on input and not used."""
        return frozenset(d.name for d in self.dropped)

    @property
    def id_column(self) -> str | None:
        return next((d.name for d in self.dropped if d.role == "id"), None)

    @cached_property
    def feature_names(self) -> list[str]:
        names = [n.name for n in self.numeric] + [d.name for d in self.derived]
        names += [f"{c.name}={level}" for c in self.categorical for level in c.columns]
        return [FEATURE_PREFIX + n for n in names]

    def to_json(self) -> str:
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "target": self.target,
            "inputs": [_input_json(i) for i in self.inputs],
            "derived": [vars(d) for d in self.derived],
            "dropped": [vars(d) for d in self.dropped],
            "features": self.feature_names,
        }
        return json.dumps(document, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Transform:
        """The transform stored by :meth:`to_json`; :class:`DataError` for anything else."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
                found = data.get("version", "1" if "feature_names" in data else "?")
                raise DataError(
                    f"unsupported transform format {data.get('format', 'driftloop 0.1')!r} version {found}"
                    f" (this driftloop reads {FORMAT} {FORMAT_VERSION}): retrain the model"
                )
            transform = cls(
                inputs=tuple(_input_from_json(i) for i in data["inputs"]),
                derived=tuple(DerivedInput(**d) for d in data.get("derived", [])),
                dropped=tuple(DroppedColumn(**d) for d in data.get("dropped", [])),
                target=data.get("target"),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DataError(f"transform.json is not a driftloop transform: {exc}") from None
        if data.get("features") != transform.feature_names:
            raise DataError(
                "transform.json is inconsistent: its stored feature names differ from the ones its inputs"
                " define (was it edited by hand?)"
            )
        return transform

    # -- encoding --------------------------------------------------------------------------------------

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows of a DataFrame (any column order, extra columns ignored) → float32 features."""
        missing = [name for name in self.input_names if name not in frame.columns]
        if missing:
            raise DataError(f"the rows lack the model's input columns {missing}")
        columns: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            series = frame[spec.name]
            if isinstance(spec, NumericInput):
                columns[spec.name] = pd.to_numeric(series, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
            else:
                columns[spec.name] = series.to_numpy(dtype=object)
        return self.encode(columns, len(frame))

    def encode_records(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Validated JSON records (numbers or null; category values) → float32 features, no DataFrame."""
        columns: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if isinstance(spec, NumericInput):
                columns[spec.name] = np.array([row.get(spec.name) for row in rows], dtype=np.float64)
            else:
                values = np.empty(len(rows), dtype=object)
                values[:] = [row.get(spec.name) for row in rows]
                columns[spec.name] = values
        return self.encode(columns, len(rows))

    def encode(self, columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        """The transform itself: float64 numerics (NaN for null) and raw category values, per input.

        Raises :class:`InvalidValuesError` for a value no category can be, or a stranger in a closed column.
        """
        out = np.zeros((rows, len(self.feature_names)), dtype=np.float64)
        filled: dict[str, np.ndarray] = {}
        for num in self.numeric:
            values = columns[num.name]
            filled[num.name] = np.where(np.isnan(values), num.fill, values)
        scaled: list[tuple[np.ndarray, float, float]] = [
            (filled[n.name], n.mean, n.std) for n in self.numeric
        ]
        scaled += [(DERIVED[d.name].compute(filled), d.mean, d.std) for d in self.derived]
        for j, (values, mean, std) in enumerate(scaled):
            out[:, j] = (values - mean) / std
        j = len(scaled)
        problems: list[tuple[str, int, Any]] = []
        for spec in self.categorical:
            values = _canonical_column(columns[spec.name], spec.boolean)
            known = np.zeros(rows, dtype=bool)
            for level in spec.levels:
                hit = values == level
                out[:, j] = hit
                known |= hit
                j += 1
            null = _nulls(values)
            invalid = np.array([v is INVALID for v in values], dtype=bool)
            if spec.null_level:
                out[:, j] = null
                known |= null
                j += 1
            stranger = ~known & ~invalid & ~null
            if spec.open:
                out[:, j] = stranger | (null & ~known)
                j += 1
            else:
                invalid |= stranger
            problems += [(spec.name, int(i), columns[spec.name][i]) for i in np.flatnonzero(invalid)]
        if problems:
            raise InvalidValuesError(problems)
        return out.astype(np.float32)

    def typed_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame``'s input columns, in order, typed as an MLflow client sends them and as the logged
        model's signature declares them: numbers as float64, categories as text or None, booleans as
        True/False/None (object columns, so MLflow's schema enforcement keeps nulls as nulls)."""
        out: dict[str, Any] = {}
        for spec in self.inputs:
            values = frame[spec.name]
            if isinstance(spec, NumericInput):
                out[spec.name] = pd.to_numeric(values, errors="coerce").astype(np.float64)
                continue
            texts = _canonical_column(values, spec.boolean)
            # An invalid value keeps its original form, so encoding it still names it.
            kept = [raw if t is INVALID else t for t, raw in zip(texts, values, strict=True)]
            if spec.boolean:
                kept = [t == "true" if t in ("true", "false") else t for t in kept]
            column = np.empty(len(kept), dtype=object)
            column[:] = kept
            out[spec.name] = column
        return pd.DataFrame(out, index=frame.index)

    def canonical(self, name: str, values: Iterable[Any]) -> np.ndarray:
        """A categorical input's raw values as the texts it compares (None: null; INVALID: invalid)."""
        spec = next(c for c in self.categorical if c.name == name)
        return _canonical_column(values, spec.boolean)


def _nulls(values: np.ndarray) -> np.ndarray:
    return np.array([v is None for v in values], dtype=bool)


def _input_json(spec: Input) -> dict[str, Any]:
    data = vars(spec).copy()
    if isinstance(spec, CategoricalInput):
        data["levels"] = list(spec.levels)
    return data


def _input_from_json(data: Mapping[str, Any]) -> Input:
    kind = data.get("kind")
    if kind == "numeric":
        return NumericInput(**data)
    if kind in ("categorical", "boolean"):
        return CategoricalInput(**{**data, "levels": tuple(data["levels"])})
    raise ValueError(f"unknown input kind {kind!r}")


def fit(
    frame: pd.DataFrame,
    columns: Sequence[ColumnSpec],
    derived: Sequence[str] = (),
    *,
    target: str | None = None,
    dropped: Sequence[DroppedColumn] = (),
) -> Transform:
    """Learn the transform from ``frame`` (typed, valid rows) for the ``feature`` columns of ``columns``.

    Numeric columns: median fill, then mean and standard deviation (a constant column scales by 1).
    Category columns: their ``allowed`` values in declared order (closed), else the levels seen in at
    least :data:`MIN_LEVEL_ROWS` rows, sorted (open). ``bool`` columns: ``false``, ``true`` (closed).
    Non-feature columns of ``columns`` join ``dropped`` with their role as the reason.
    """
    if frame.empty:
        raise DataError("cannot fit the transform on zero rows")
    numeric_names = [c.name for c in columns if c.role == "feature" and c.type in ("float", "int")]
    for name in derived:
        if name not in DERIVED:
            raise ConfigError(
                f"unknown derived feature {name!r} in data.derived_features; known: {sorted(DERIVED)}"
            )
        missing = [r for r in DERIVED[name].requires if r not in numeric_names]
        if missing:
            raise ConfigError(f"derived feature {name!r} needs numeric feature columns {missing}")
    inputs: list[Input] = []
    filled: dict[str, np.ndarray] = {}
    for spec in columns:
        if spec.role != "feature":
            continue
        if spec.type in ("float", "int"):
            raw = pd.to_numeric(frame[spec.name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            fill = float(np.nanmedian(raw)) if np.isfinite(raw).any() else 0.0
            values = np.where(np.isnan(raw), fill, raw)
            filled[spec.name] = values
            inputs.append(
                NumericInput(
                    name=spec.name,
                    fill=fill,
                    mean=float(values.mean()),
                    std=float(values.std()) or 1.0,
                    nullable=spec.nullable,
                    integer=spec.type == "int",
                    min=spec.min,
                    max=spec.max,
                )
            )
        elif spec.type in ("category", "string", "bool"):
            inputs.append(_fit_categorical(spec, frame[spec.name]))
    derived_inputs = []
    for name in derived:
        values = DERIVED[name].compute(filled)
        derived_inputs.append(DerivedInput(name, float(values.mean()), float(values.std()) or 1.0))
    roles = {"id": "row id", "timestamp": "event time (orders the data)", "entity": "entity key (lineage)"}
    schema_dropped = [
        DroppedColumn(c.name, c.role, roles.get(c.role, c.role)) for c in columns if c.role != "feature"
    ]
    if not inputs:
        raise DataError("no input columns to fit the transform on")
    return Transform(
        inputs=tuple(inputs),
        derived=tuple(derived_inputs),
        dropped=(*schema_dropped, *dropped),
        target=target,
    )


def _fit_categorical(spec: ColumnSpec, series: pd.Series[Any]) -> CategoricalInput:
    boolean = spec.type == "bool"
    values = _canonical_column(series.tolist(), boolean)
    invalid = [v for v in values if v is INVALID]
    if invalid:
        raise DataError(f"column {spec.name!r} has values that are not categories: {invalid[:3]!r}")
    null_level = bool(_nulls(values).any())
    if boolean:
        return CategoricalInput(
            spec.name,
            ("false", "true"),
            nullable=spec.nullable,
            null_level=null_level,
            open=False,
            kind="boolean",
        )
    if spec.allowed:
        return CategoricalInput(spec.name, tuple(spec.allowed), spec.nullable, null_level, open=False)
    counts = Counter(v for v in values if v is not None)
    levels = tuple(sorted(level for level, k in counts.items() if k >= MIN_LEVEL_ROWS))
    return CategoricalInput(spec.name, levels, nullable=spec.nullable, null_level=null_level, open=True)
