"""The reference to a saved step artifact, apart from the catalog that reads and writes artifacts.

Kept free of pandas and pyarrow (which the catalog needs to encode tables) so that reading run records
(``pipeline list``, ``pipeline show``, the loop's ledger) does not import them: they cost over half a
second of a read command's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from driftloop.pipeline.spec import ArtifactKind

__all__ = ["ArtifactRef"]


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact is (store key and full URI), its kind, and the sha256 of its bytes."""

    key: str
    uri: str
    kind: ArtifactKind
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "uri": self.uri, "kind": self.kind, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(
            key=data["key"], uri=data["uri"], kind=data["kind"], sha256=data["sha256"], size=data["size"]
        )
