"""The simulated industrial plant: predictive-maintenance data with controllable drift.

Modelled on the AI4I 2020 dataset: a fleet of machines processes products of variant L/M/H; sensors
report air and process temperature, rotational speed, torque and tool wear; five failure modes (TWF,
HDF, PWF, OSF, RNF) follow physical rules on the true values. Drift scenarios (:data:`SCENARIOS`) change
the plant, the sensors or the records from a chosen day on. :func:`simulate` writes raw readings and,
separately, delayed ground-truth labels through an :class:`~driftloop.storage.ObjectStore`.
"""

from typing import TYPE_CHECKING

from driftloop.simulate._request import (
    LABEL_COLUMNS,
    RAW_COLUMNS,
    SimulationRequest,
    SimulationSummary,
)
from driftloop.simulate._scenarios import SCENARIOS, DriftSpec, changed_columns, parse_drift

if TYPE_CHECKING:
    from driftloop.simulate._run import simulate

__all__ = [
    "LABEL_COLUMNS",
    "RAW_COLUMNS",
    "SCENARIOS",
    "DriftSpec",
    "SimulationRequest",
    "SimulationSummary",
    "changed_columns",
    "parse_drift",
    "simulate",
]


def __getattr__(name: str) -> object:
    # The generator pulls in numpy, scipy and pyarrow; the CLI lists scenarios without paying for them.
    if name == "simulate":
        from driftloop.simulate._run import simulate

        return simulate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
