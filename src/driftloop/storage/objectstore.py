"""One API over local directories and S3-compatible buckets: the store for a URI or the settings.

Backends are chosen by the URI's scheme; each meets :mod:`driftloop.storage.contract`. The S3 backend
imports boto3 only when it first talks to S3, so a local-only install never loads it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from driftloop.errors import UsageError
from driftloop.settings import S3Settings
from driftloop.storage._local import LocalStore
from driftloop.storage._s3 import S3Store
from driftloop.storage.contract import ObjectInfo, ObjectStore, join_key, validate_key

if TYPE_CHECKING:
    from driftloop.settings import Settings

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "check_writable",
    "join_key",
    "open_store",
    "store_for",
    "validate_key",
]


def open_store(uri: str, s3: S3Settings | None = None) -> ObjectStore:
    """The store rooted at ``uri``: an absolute local path, ``file://…`` or ``s3://bucket[/prefix]``."""
    if uri.startswith("s3://"):
        return S3Store(uri, s3 or S3Settings())
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise UsageError(f"unsupported storage URI {uri!r}: scheme {scheme!r} (use a local path or s3://)")
    return LocalStore(uri.removeprefix("file://"))


def store_for(settings: Settings) -> ObjectStore:
    """The configured storage root."""
    return open_store(settings.storage_root, settings.storage.s3)


def check_writable(store: ObjectStore) -> None:
    """Prove the store accepts writes (bucket exists, credentials work) before real work starts.

    Raises the store's usual errors; leaves nothing behind.
    """
    probe = f".driftloop-probe-{uuid.uuid4().hex}"
    store.write_bytes(probe, b"")
    store.delete(probe)
