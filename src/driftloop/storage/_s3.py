"""S3 backend on boto3: the same client code talks to AWS, MinIO or a moto server.

Atomicity comes from S3 itself: a PUT (or a completed multipart upload) publishes the whole object at
once, so writers stream into a local spool file and upload on success only.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO

from driftloop.errors import NotFoundError, StorageError, StorageUnavailableError, UsageError
from driftloop.storage.contract import ObjectInfo, validate_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pyarrow.fs
    from mypy_boto3_s3 import S3Client

    from driftloop.settings import S3Settings

# Spool small writes in memory, larger ones on disk; boto3 switches to multipart above its threshold.
_SPOOL_BYTES = 16 * 1024 * 1024
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


class S3Store:
    """``s3://bucket/prefix`` on any S3-compatible endpoint."""

    def __init__(self, uri: str, settings: S3Settings) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise UsageError(f"invalid S3 URI {uri!r}: expected s3://bucket[/prefix]")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._settings = settings
        self._client_obj: S3Client | None = None

    @property
    def root(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def bucket(self) -> str:
        return self._bucket

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._key(key)}"

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        with self._errors("write", full):
            self._client.put_object(Bucket=self._bucket, Key=full, Body=data)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            yield spool  # type: ignore[misc]  # SpooledTemporaryFile is a BinaryIO in practice
            spool.seek(0)
            with self._errors("write", full):
                self._client.upload_fileobj(spool, self._bucket, full)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with self._errors("read", full):
            body = self._client.get_object(Bucket=self._bucket, Key=full)["Body"]
        with contextlib.closing(body):
            yield body  # type: ignore[misc]  # botocore's StreamingBody implements read()

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            with self._errors("read", full):
                self._client.head_object(Bucket=self._bucket, Key=full)
        except NotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = f"{self._prefix}/{prefix}" if self._prefix else prefix
        strip = len(self._prefix) + 1 if self._prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", full_prefix or "/"):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(key=obj["Key"][strip:], size=obj["Size"], modified=obj["LastModified"])

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors("delete", full):
            self._client.delete_object(Bucket=self._bucket, Key=full)

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        import pyarrow.fs

        s = self._settings
        kwargs: dict[str, Any] = {"region": s.region, "connect_timeout": s.connect_timeout_s}
        if s.access_key_id and s.secret_access_key:
            kwargs["access_key"] = s.access_key_id
            kwargs["secret_key"] = s.secret_access_key.get_secret_value()
            if s.session_token:
                kwargs["session_token"] = s.session_token.get_secret_value()
        if s.endpoint_url:
            scheme, _, host = s.endpoint_url.partition("://")
            kwargs["endpoint_override"] = host.rstrip("/")
            kwargs["scheme"] = scheme
        if s.addressing_style == "path":
            kwargs["force_virtual_addressing"] = False
        base = f"{self._bucket}/{self._prefix}" if self._prefix else self._bucket
        return pyarrow.fs.S3FileSystem(**kwargs), base

    @property
    def _client(self) -> S3Client:
        if self._client_obj is None:
            self._client_obj = make_client(self._settings)
        return self._client_obj

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Translate botocore failures into the driftloop error tree."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

        where = f"s3://{self._bucket}/{key}"
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise NotFoundError(f"no such object: {where}") from exc
            if code == "NoSuchBucket":
                raise StorageError(
                    f"cannot {action} {where}: bucket {self._bucket!r} does not exist"
                ) from exc
            if code in _TRANSIENT_CODES:
                raise StorageUnavailableError(f"cannot {action} {where}: S3 answered {code}") from exc
            message = exc.response.get("Error", {}).get("Message", "") or code
            raise StorageError(f"cannot {action} {where}: {code}: {message}") from exc
        except (ConnectionError, HTTPClientError) as exc:
            endpoint = self._settings.endpoint_url or "AWS"
            raise StorageUnavailableError(
                f"cannot {action} {where}: S3 endpoint {endpoint} unreachable"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action} {where}: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3Store({self.root!r}, endpoint={self._settings.endpoint_url!r})"


def make_client(settings: S3Settings) -> S3Client:
    """A boto3 S3 client for ``settings``.

    Its retries are the only retry layer around S3 (decision 0049): botocore's standard mode retries
    throttling, 5xx and connection errors with jittered exponential backoff, ``settings.max_attempts``
    attempts in all (the first included: ``total_max_attempts``; botocore's ``max_attempts`` would
    count retries only). What still fails is translated once, by :meth:`S3Store._errors`.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        s3={"addressing_style": settings.addressing_style},
    )
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key.get_secret_value()
        if settings.secret_access_key
        else None,
        aws_session_token=settings.session_token.get_secret_value() if settings.session_token else None,
        region_name=settings.region,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)
