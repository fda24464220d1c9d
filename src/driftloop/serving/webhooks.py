"""MLflow registry webhooks: ``POST /v1/registry-events`` wakes the model follower at once.

MLflow 3 servers deliver registry events (an alias set or deleted, a new version) to registered URLs,
signed with HMAC-SHA256 over ``<delivery id>.<unix timestamp>.<body>`` in ``X-MLflow-Signature``
(``v1,<base64>``). The event's content is not trusted beyond "something changed": the follower reads
the alias from the registry itself, so a forged or replayed event can at most cause an extra check.
Polling stays on as the safety net for lost deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from driftloop.errors import DriftloopError

__all__ = ["MAX_SKEW_S", "WebhookRejectedError", "verify"]

MAX_SKEW_S = 300  # deliveries older (or newer) than this are refused: replay protection


class WebhookRejectedError(DriftloopError):
    """A delivery without a valid signature (401)."""

    http_status = 401


def verify(
    secret: str,
    body: bytes,
    *,
    signature: str | None,
    delivery_id: str | None,
    timestamp: str | None,
    now: float | None = None,
) -> None:
    """Raise :class:`WebhookRejectedError` unless ``signature`` is MLflow's signature of this delivery."""
    if not (signature and delivery_id and timestamp):
        raise WebhookRejectedError(
            "missing X-MLflow-Signature, X-MLflow-Delivery-Id or X-MLflow-Timestamp (serving.webhook_secret "
            "is set, so registry events must be signed)"
        )
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejectedError(f"X-MLflow-Timestamp {timestamp!r} is not a unix timestamp") from None
    if abs((time.time() if now is None else now) - sent) > MAX_SKEW_S:
        raise WebhookRejectedError(f"the delivery is over {MAX_SKEW_S} s old or ahead: refused as a replay")
    version, _, given = signature.partition(",")
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    if version != "v1" or not hmac.compare_digest(given, base64.b64encode(digest).decode()):
        raise WebhookRejectedError(
            "the X-MLflow-Signature does not match this delivery and serving.webhook_secret"
        )
