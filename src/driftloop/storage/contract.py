"""The contract every object store backend meets, and the keys it is addressed by.

A store is rooted at a URI (``/abs/path`` or ``s3://bucket/prefix``) and addressed by *keys*: relative,
``/``-separated paths such as ``raw/plant/date=2026-01-01/part-0000.csv``.

Contract shared by every backend (``tests/storage/test_objectstore_contract.py`` runs it against each):

* writes are atomic: a reader sees the old object, or the whole new one, never a partial file;
* a write that raises leaves nothing behind;
* ``list`` is recursive, sorted by key, and never shows in-flight temporary files;
* ``delete`` of a missing key is a no-op (idempotent);
* reading a missing key raises :class:`~driftloop.errors.NotFoundError`; an unreachable store
  raises :class:`~driftloop.errors.StorageUnavailableError`; any other refusal
  :class:`~driftloop.errors.StorageError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from driftloop.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from datetime import datetime

    import pyarrow.fs

__all__ = ["ObjectInfo", "ObjectStore", "join_key", "validate_key"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its key relative to the store root, size in bytes, last modification."""

    key: str
    size: int
    modified: datetime


@runtime_checkable
class ObjectStore(Protocol):
    """Bytes under keys. See the module docstring for the contract."""

    @property
    def root(self) -> str:
        """The URI this store is rooted at (no trailing slash)."""
        ...

    def uri(self, key: str) -> str:
        """The full URI of ``key`` (what other tools such as DVC or DuckDB are given)."""
        ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A binary file to stream into; published atomically when the block exits without error."""
        ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a key prefix, not only a directory)."""
        ...

    def delete(self, key: str) -> None: ...

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """A pyarrow filesystem and the base path of the root in it, for Parquet datasets."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed relative key, else raise :class:`UsageError`."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key:
        raise UsageError(f"invalid storage key {key!r}: use a relative path like 'raw/part-0.csv'")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise UsageError(f"invalid storage key {key!r}: empty, '.' or '..' segments are not allowed")
    return key


def join_key(*parts: str) -> str:
    """Join key segments with ``/``, ignoring empty ones and stray slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
