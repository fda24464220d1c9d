"""The metadata database (SQLite embedded, PostgreSQL in production) and its tables."""

from driftloop.storage.metadata.database import Database, open_metadata
from driftloop.storage.metadata.tables import (
    Base,
    ModelApprovalRow,
    ModelTransitionRow,
    MonitorDecisionRow,
    PipelineRunRow,
    RegistryLockRow,
    SimulationRow,
    StepRunRow,
)

__all__ = [
    "Base",
    "Database",
    "ModelApprovalRow",
    "ModelTransitionRow",
    "MonitorDecisionRow",
    "PipelineRunRow",
    "RegistryLockRow",
    "SimulationRow",
    "StepRunRow",
    "open_metadata",
]
