"""The simulated plant's schema and tuning: the one place that knows its column names.

The simulator writes these columns, the demo drives them, and the configuration's shipped defaults
(``data``, ``registry.model_name``) are the plant's, so that ``driftloop simulate`` followed by
``driftloop pipeline run`` works with no configuration file. ``driftloop.settings``
builds its typed defaults from the plain values here (decision 0056); a dataset of your own replaces
them in ``driftloop.toml``.

Plain values and the standard library only: ``driftloop.settings``, the lowest layer, reads this module,
so it must import nothing of driftloop (an import-linter contract checks it).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = [
    "COLUMNS",
    "DATASET",
    "DERIVED_FEATURES",
    "FAILURE_MODES",
    "MODEL_NAME",
    "RAW_COLUMNS",
    "SENSORS",
    "TARGET",
    "Column",
]


class Column(TypedDict):
    """One raw column as ``[[data.columns]]`` in ``driftloop.toml`` spells it (see ``ColumnSpec``)."""

    name: str
    type: str
    role: NotRequired[str]
    min: NotRequired[float]
    max: NotRequired[float]
    allowed: NotRequired[tuple[str, ...]]


DATASET = "plant"
# Any of the five failure modes; the label the model learns.
TARGET = "machine_failure"
FAILURE_MODES = (TARGET, "twf", "hdf", "pwf", "osf", "rnf")
MODEL_NAME = "plant-failure"

# The raw readings, in the order the simulator writes them.
COLUMNS: tuple[Column, ...] = (
    {"name": "timestamp", "type": "timestamp", "role": "timestamp"},
    {"name": "record_id", "type": "string", "role": "id"},
    {"name": "machine_id", "type": "string", "role": "entity"},
    {"name": "product_variant", "type": "category", "allowed": ("L", "M", "H")},
    {"name": "air_temperature_k", "type": "float", "min": 250.0, "max": 350.0},
    {"name": "process_temperature_k", "type": "float", "min": 250.0, "max": 370.0},
    {"name": "rotational_speed_rpm", "type": "int", "min": 0.0, "max": 5000.0},
    {"name": "torque_nm", "type": "float", "min": 0.0, "max": 200.0},
    {"name": "tool_wear_min", "type": "int", "min": 0.0, "max": 400.0},
)
RAW_COLUMNS = tuple(column["name"] for column in COLUMNS)
# The numeric sensor readings (what a client sends as numbers).
SENSORS = tuple(column["name"] for column in COLUMNS if column["type"] in ("float", "int"))

# The physics-informed features the model gets besides the raw ones (``driftloop.core.transform``).
DERIVED_FEATURES = ("power_w", "temp_diff_k", "strain_min_nm")
