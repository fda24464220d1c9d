"""The data the loop works on (its raw schema and target) and the simulator's options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from driftloop.settings._section import Section
from driftloop.simulate import plant

__all__ = ["PLANT_COLUMNS", "ColumnRole", "ColumnSpec", "ColumnType", "DataSettings", "SimulateSettings"]

# Printable, no control characters, no surrounding blanks.
_COLUMN_NAME = r"^[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"
ColumnType = Literal["float", "int", "bool", "string", "category", "timestamp"]
ColumnRole = Literal["feature", "id", "timestamp", "entity"]


class ColumnSpec(Section):
    """One raw column: its type, whether it may be empty, its valid range or values, and its role.

    Roles: ``feature`` (model input), ``id`` (unique row key, joins labels and predictions),
    ``timestamp`` (event time, orders the data), ``entity`` (kept for lineage and slicing, not an input).
    Names are the data's own (a CSV header may have blanks or punctuation); control characters and
    surrounding blanks are refused.
    """

    name: str = Field(min_length=1, max_length=200, pattern=_COLUMN_NAME)
    type: ColumnType
    role: ColumnRole = "feature"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name}: min {self.min} is above max {self.max}")
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"column {self.name}: min/max apply to float and int columns only")
        if self.allowed is not None and self.type not in ("category", "string"):
            raise ValueError(f"column {self.name}: allowed values apply to category and string columns only")
        return self


# The simulated plant's raw schema, typed: the shipped default for ``data.columns`` (decision 0056).
PLANT_COLUMNS: tuple[ColumnSpec, ...] = tuple(ColumnSpec.model_validate(column) for column in plant.COLUMNS)


class DataSettings(Section):
    """Which dataset the loop works on, its raw schema and how strict validation is.

    The defaults are the simulated plant's (``driftloop.simulate.plant``); set all four for your own data.
    """

    dataset: str = Field(default=plant.DATASET, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    target: str = plant.TARGET
    columns: tuple[ColumnSpec, ...] = PLANT_COLUMNS
    # Derived features by name (see driftloop.core.transform.DERIVED).
    derived_features: tuple[str, ...] = plant.DERIVED_FEATURES
    # Above this share of rejected rows the pipeline stops as a data incident instead of training.
    max_bad_share: float = Field(default=0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _roles(self) -> DataSettings:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        if [c.role for c in self.columns].count("id") != 1:
            raise ValueError("exactly one column needs role = 'id' (it joins labels and predictions)")
        if [c.role for c in self.columns].count("timestamp") > 1:
            raise ValueError("at most one column may have role = 'timestamp'")
        if not any(c.role == "feature" for c in self.columns):
            raise ValueError("at least one column needs role = 'feature'")
        if self.target in names:
            raise ValueError(f"target {self.target!r} must come from labels, not be a raw column")
        return self


class SimulateSettings(Section):
    """Defaults for ``driftloop simulate`` (each is also a command-line option)."""

    machines: int = Field(default=20, ge=1, le=100_000)
    rows_per_day: int = Field(default=5_000, ge=1)
    label_delay_hours: float = Field(default=24.0, ge=0)
    seed: int = Field(default=0, ge=0)
