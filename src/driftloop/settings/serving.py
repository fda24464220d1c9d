"""The prediction service: serving, request capture, access control and rate limits."""

from __future__ import annotations

import math
from pathlib import Path  # noqa: TC003 - pydantic resolves the annotations at run time
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from driftloop.settings._section import Section

__all__ = ["AuthRole", "AuthSettings", "CaptureSettings", "RateLimit", "ServingSettings"]


class ServingSettings(Section):
    """The prediction service (``driftloop serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    alias: str = "production"  # the registry alias the service follows
    poll_interval_s: float = Field(default=5.0, gt=0)  # how often it checks the alias for a new version
    max_rows: int = Field(default=10_000, ge=1)  # per request
    # A request body over this is refused with 413 while it is read, never buffered whole: 10,000 rows of
    # ~400 bytes of JSON (the plant's are ~150); parsing the worst body this size (small unknown keys)
    # holds the event loop ~0.25 s (decision 0039). A 422 lists the first ``max_field_errors`` bad fields.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    max_field_errors: int = Field(default=100, ge=1)
    # MLflow webhooks (POST /v1/registry-events) make the swap immediate; with a secret, deliveries
    # must carry MLflow's HMAC signature. Unset: the endpoint accepts unsigned events (local use).
    webhook_secret: SecretStr | None = None
    # Adaptive micro-batching: concurrent requests share one model call of at most ``batch_max_rows``;
    # ``batch_max_wait_ms`` optionally waits to fill a batch, only while requests are arriving together.
    micro_batching: bool = True
    # Score with ONNX Runtime when the model exports and reproduces torch within 1e-5 (else torch).
    onnx: bool = True
    shadow: bool = True  # score the staging version in shadow beside production (promotion evidence)
    batch_max_rows: int = Field(default=256, ge=1)
    batch_max_wait_ms: float = Field(default=0.0, ge=0)
    # POST /v1/feedback (docs/serving.md): labels per request, beyond which the request is a 413.
    max_feedback_rows: int = Field(default=10_000, ge=1)
    # Prediction ids carry a tag computed with this secret, so every replica sharing it recognises the
    # ids any of them issued, across restarts, without a lookup (decision 0041). Unset: a key generated
    # once under <home>, which the workers and restarts of one host share, but not other hosts.
    id_secret: SecretStr | None = None
    # Secrets of earlier ids still accepted after a rotation (labels arrive a day or more later).
    id_previous_secrets: tuple[SecretStr, ...] = ()
    # The band a regression model's labels must fall in, per model name, else for any model; default:
    # derived from the training target (driftloop.core.labels). Classification labels are 0 or 1.
    label_range: tuple[float, float] | None = None
    label_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _feedback(self) -> ServingSettings:
        named = [("label_range", self.label_range)] if self.label_range is not None else []
        named += [(f"label_ranges.{model}", band) for model, band in self.label_ranges.items()]
        for key, (low, high) in named:
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"{key} must be two finite numbers, the lower first, got [{low}, {high}]")
        secrets = [("id_secret", self.id_secret)] if self.id_secret is not None else []
        secrets += [("id_previous_secrets", secret) for secret in self.id_previous_secrets]
        for key, secret in secrets:
            if len(secret.get_secret_value()) < 16:
                raise ValueError(f"{key}: a secret needs at least 16 characters")
        return self


class CaptureSettings(Section):
    """Every prediction and label: a local WAL, landed on the store, compacted to Parquet (docs/capture.md)"""

    enabled: bool = True  # off: the service captures nothing
    wal_dir: Path | None = None  # the local write-ahead log; empty: ``<home>/capture/wal``
    # When an acknowledged capture is safe (docs/capture.md): "process" — written to the WAL before the
    # response (survives kill -9 and any crash of the service; synced within ``sync_interval_ms``, so a
    # power loss can lose that much); "fsync" — fsynced before the response (survives power loss too).
    durability: Literal["process", "fsync"] = "process"
    sync_interval_ms: float = Field(default=50.0, gt=0)
    # "fsync": appends arriving while the writer is busy share its next write + fsync (group commit); this
    # makes it wait up to so long for more (0: none; under load the groups form by themselves).
    group_commit_ms: float = Field(default=0.0, ge=0)
    segment_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1)  # a segment is sealed and shipped once
    segment_max_age_s: float = Field(default=5.0, gt=0)  # this big or this old, whichever comes first
    # Unshipped bytes kept on local disk; beyond this appends fail (HTTP 503) rather than drop data.
    max_buffer_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    # Shipping retries after a storage failure wait this long, doubling up to ``retry_max_s``.
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    # Landed segments are compacted into Parquet (what monitoring reads) once no capture came for this
    # long (0: not on idleness), and at the latest once one has waited ``compact_max_delay_s`` (0: no
    # bound; then only idleness, `flush()` and `driftloop capture compact` compact). Readers never do.
    # Land and compact in a helper process, off the service's GIL (off: in the shipper thread).
    compact_idle_s: float = Field(default=2.0, ge=0)
    compact_max_delay_s: float = Field(default=60.0, ge=0)
    convert_in_subprocess: bool = True

    @model_validator(mode="after")
    def _retry_order(self) -> CaptureSettings:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"retry_initial_s {self.retry_initial_s} is above retry_max_s {self.retry_max_s}"
            )
        return self


AuthRole = Literal["view", "predict", "label", "promote", "approve", "admin"]


class RateLimit(Section):
    """A token bucket: ``per_second`` requests sustained, bursts of up to ``burst`` (0: a second's worth)."""

    per_second: float = Field(gt=0)
    burst: int = Field(default=0, ge=0)


class AuthSettings(Section):
    """Tokens and roles for the service and the CLI, and per-token rate limits (docs/auth.md)."""

    enabled: bool = False
    token: SecretStr | None = None  # what the CLI/SDK acts with (also DRIFTLOOP_TOKEN)
    # The service trusts a verified token this long before asking the database again: a revoked token
    # is refused at most this much later. 0: every request asks the database.
    cache_s: float = Field(default=5.0, ge=0, le=300)
    # Per token (per client address with auth off), per service process; a role's own limit replaces it
    # on the routes that need that role.
    rate_limit: RateLimit | None = None
    role_rate_limits: dict[AuthRole, RateLimit] = Field(default_factory=dict)
