"""Feature versions: content-addressed snapshots of the feature table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["FeatureVersion"]


@dataclass(frozen=True)
class FeatureVersion:
    """One immutable feature snapshot.

    ``id`` is the DVC md5 of the CSV: the same bytes always give the same version. ``lineage`` records
    where it came from (raw partitions and their hashes, validation summary, transform parameters,
    pipeline run).
    """

    id: str
    rows: int
    size: int
    columns: tuple[str, ...]
    created_at: datetime
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.id[:12]
