"""Model-registry domain types, free of MLflow: what the rest of driftloop knows about a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from driftloop.errors import UsageError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["STAGE_TAG", "ModelRef", "ModelVersion", "Stage", "TrackedRun"]

STAGE_TAG = "driftloop.stage"


class Stage(StrEnum):
    """The seed's None → Staging → Production, plus Archived for replaced production versions."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


@dataclass(frozen=True)
class ModelRef:
    """``NAME/VERSION`` (or ``NAME`` alone, meaning the latest version when resolved)."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, version = text.partition("/")
        if not name or (sep and not version.isdigit()):
            raise UsageError(
                f"invalid model reference {text!r}: use NAME or NAME/VERSION, e.g. plant-failure/3"
            )
        return cls(name=name, version=int(version) if sep else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version as driftloop sees it."""

    name: str
    version: int
    run_id: str | None
    source: str
    status: str
    created_at: datetime
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def stage(self) -> Stage:
        try:
            return Stage(self.tags.get(STAGE_TAG, Stage.NONE))
        except ValueError:
            return Stage.NONE

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)


@dataclass(frozen=True)
class TrackedRun:
    """One tracked run as driftloop sees it."""

    run_id: str
    experiment_id: str
    name: str
    status: str
    artifact_uri: str
    start_time: datetime | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
