"""Whole-object writes through the object store, undone together when a run fails."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from driftloop.storage import ObjectStore

__all__ = ["PartitionWriter"]


class PartitionWriter:
    """Writes objects atomically and remembers which ones this run created.

    Keys under ``prefixes`` that existed before the run are recorded up front, so :meth:`discard` never
    deletes data the run did not create. (An object the run *overwrote* keeps its new, complete
    content: the previous bytes are gone either way, and a rerun of the same request rewrites the same
    bytes.)
    """

    def __init__(self, store: ObjectStore, prefixes: Iterable[str]) -> None:
        self._store = store
        self._existing = {info.key for prefix in prefixes for info in store.list(prefix)}
        self._written: list[str] = []

    def write(self, key: str, parts: Iterable[bytes]) -> None:
        """Publish ``parts`` concatenated as ``key``; on error nothing is left under ``key``."""
        with self._store.open_write(key) as fh:
            for part in parts:
                fh.write(part)
        self._written.append(key)

    def discard(self, cause: BaseException) -> None:
        """Best effort: delete every object this run created; note on ``cause`` what could not be."""
        left = []
        for key in reversed(self._written):
            if key in self._existing:
                continue
            try:
                self._store.delete(key)
            except (DriftloopError, OSError):
                left.append(key)
        if left:
            with contextlib.suppress(Exception):
                cause.add_note(f"driftloop could not remove {len(left)} written object(s), e.g. {left[0]}")
