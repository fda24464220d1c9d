"""S3-specific failure translation, through a real HTTP endpoint."""

from __future__ import annotations

import pytest

from driftloop.errors import StorageError, StorageUnavailableError
from driftloop.settings import S3Settings
from driftloop.storage import check_writable, open_store
from tests.conftest import free_port


def test_missing_bucket_names_the_bucket(s3_settings: S3Settings) -> None:
    store = open_store("s3://no-such-bucket/prefix", s3_settings)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        check_writable(store)


def test_unreachable_endpoint_is_unavailable_not_a_crash() -> None:
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        max_attempts=1,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
    )
    store = open_store("s3://bucket", settings)
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        store.write_bytes("x", b"1")
    with pytest.raises(StorageUnavailableError):
        list(store.list())


def test_invalid_bucket_name_is_a_storage_error(s3_settings: S3Settings) -> None:
    store = open_store("s3://Invalid_Bucket_Name", s3_settings)
    with pytest.raises(StorageError):
        store.write_bytes("x", b"1")
