"""Bytes and rows: the object store (local, S3) and the metadata database."""

from driftloop.storage._local import fsync_dir
from driftloop.storage.objectstore import (
    ObjectInfo,
    ObjectStore,
    check_writable,
    join_key,
    open_store,
    store_for,
    validate_key,
)

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "check_writable",
    "fsync_dir",
    "join_key",
    "open_store",
    "store_for",
    "validate_key",
]
