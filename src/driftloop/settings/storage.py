"""Where bytes and rows live: the object store (local or S3) and the metadata database."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from driftloop.settings._section import Section

__all__ = ["DatabaseSettings", "S3Settings", "StorageSettings"]


class S3Settings(Section):
    """How to reach an S3-compatible store (AWS, MinIO, moto, …).

    Credentials left unset fall back to boto3's usual chain (environment, profile, instance role).
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "path"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)


class StorageSettings(Section):
    """The object store: a local directory or ``s3://bucket/prefix``. Empty means ``<home>``."""

    root: str = ""
    s3: S3Settings = S3Settings()


class DatabaseSettings(Section):
    """driftloop's own metadata tables. Empty URL means SQLite at ``<home>/driftloop.db``."""

    url: SecretStr = SecretStr("")
    echo: bool = False
