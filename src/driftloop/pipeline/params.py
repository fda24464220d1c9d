"""The parameters of one pipeline run, stored with the run so ``--resume`` and step processes see them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["RunParams"]


class RunParams(BaseModel):
    """What data a run reads. ``start``/``end`` bound raw partitions (inclusive); ``prefix`` replaces them
    with an explicit raw prefix; labels count only when known by ``as_of``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    start: date | None = None
    end: date | None = None
    prefix: str | None = None
    as_of: datetime = Field(default_factory=lambda: datetime.now(UTC))
    until: str | None = None
    use_cache: bool = True
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("as_of")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def subset(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The named parameters as JSON-ready values (part of a step's cache key)."""
        dumped = self.model_dump(mode="json")
        return {name: dumped.get(name, self.extra.get(name)) for name in names}
