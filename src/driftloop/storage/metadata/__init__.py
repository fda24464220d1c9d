"""The metadata database (SQLite embedded, PostgreSQL in production) and its tables."""

from driftloop.storage.metadata.database import Database, open_metadata
from driftloop.storage.metadata.tables import (
    ApiTokenRow,
    Base,
    GuardRow,
    ModelApprovalRow,
    ModelTransitionRow,
    MonitorDecisionRow,
    PipelineRunRow,
    RegistryLockRow,
    SimulationRow,
    StepRunRow,
    TriggerRow,
)

__all__ = [
    "ApiTokenRow",
    "Base",
    "Database",
    "GuardRow",
    "ModelApprovalRow",
    "ModelTransitionRow",
    "MonitorDecisionRow",
    "PipelineRunRow",
    "RegistryLockRow",
    "SimulationRow",
    "StepRunRow",
    "TriggerRow",
    "open_metadata",
]
