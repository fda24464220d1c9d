"""Pipeline run and step states."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RunStatus", "StepStatus"]


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"  # skipped: an earlier identical execution's outputs were reused
    FAILED = "failed"

    @property
    def done(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.CACHED)
