"""S3-specific failure translation, through a real HTTP endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.awsrequest import AWSResponse

from driftloop.errors import StorageError, StorageUnavailableError
from driftloop.settings import S3Settings
from driftloop.storage import check_writable, open_store
from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from botocore.awsrequest import AWSPreparedRequest


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


class _Body:
    """The raw body of a canned botocore response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self._data


def _fail_first(answers: int, calls: list[str]) -> Callable[..., AWSResponse | None]:
    """A ``before-send`` hook: the first ``answers`` requests get S3's 503 SlowDown, later ones go through."""
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    def hook(request: AWSPreparedRequest, **_: object) -> AWSResponse | None:
        calls.append(request.method)
        if len(calls) <= answers:
            return AWSResponse(request.url, 503, {}, _Body(body))
        return None

    return hook


@pytest.mark.parametrize(("max_attempts", "throttled", "ok"), [(3, 2, True), (2, 2, False)])
def test_botocore_is_the_one_retry_layer(
    s3_settings: S3Settings, s3_bucket: str, max_attempts: int, throttled: int, ok: bool
) -> None:
    settings = s3_settings.model_copy(update={"max_attempts": max_attempts})
    store = open_store(f"s3://{s3_bucket}/root", settings)
    calls: list[str] = []
    # The store's own client: the hook answers before anything is sent, as a throttling S3 would.
    store._client.meta.events.register("before-send.s3.PutObject", _fail_first(throttled, calls))  # type: ignore[attr-defined]
    if ok:
        store.write_bytes("k", b"1")
        assert store.read_bytes("k") == b"1"
    else:
        with pytest.raises(StorageUnavailableError, match="S3 answered SlowDown"):
            store.write_bytes("k", b"1")
    assert calls == ["PUT"] * min(throttled + 1, max_attempts)  # botocore's attempts, nothing around them
