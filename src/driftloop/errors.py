"""The one exception tree.

Every error driftloop raises on purpose is a :class:`DriftloopError`. Each carries a one-line
``headline`` for the CLI, an ``exit_code`` for the CLI and an ``http_status`` for the services, so the
edges translate errors without knowing every subclass. Anything that is *not* a ``DriftloopError`` is a
bug: the CLI shows its traceback.
"""

from __future__ import annotations

import re

__all__ = [
    "ApprovalRequiredError",
    "AuthenticationError",
    "CaptureFullError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "DriftloopError",
    "MetadataError",
    "NotFoundError",
    "PermissionDeniedError",
    "PolicyError",
    "RateLimitedError",
    "ServiceError",
    "StorageError",
    "StorageUnavailableError",
    "UsageError",
    "one_line",
]

# What a terminal would act on rather than print: C0/C1 controls (ESC starts colour and cursor
# sequences), lone surrogates (from undecodable file names; printing them raises) and the bidi
# overrides that reorder what the reader sees.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` as one printable line: whitespace runs (line breaks included) become one space, and
    every other control character is shown as an escape (``\\x1b``, ``\\u202e``) instead of acting."""
    return _UNPRINTABLE.sub(_escape, " ".join(text.split()))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class DriftloopError(Exception):
    """Root of every expected driftloop error.

    ``headline`` is a single readable line: what went wrong and, where it helps, what to do.
    """

    exit_code: int = 1
    http_status: int = 500

    def __init__(self, headline: str) -> None:
        # Headlines often quote data (a CSV line, a file name): fold newlines and escape control
        # characters so the CLI's one line stays one line and never drives the terminal.
        self.headline = one_line(headline)
        super().__init__(self.headline)


class UsageError(DriftloopError):
    """The caller asked for something malformed (bad option value, unknown name)."""

    exit_code = 2
    http_status = 400


class ConfigError(DriftloopError):
    """The configuration file or an environment override is invalid; the headline names the key."""

    http_status = 500


class NotFoundError(DriftloopError):
    """A named thing (object, run, version) does not exist."""

    http_status = 404


class ConflictError(DriftloopError):
    """The request conflicts with the current state (a race lost, a lock held)."""

    http_status = 409


class DataError(DriftloopError):
    """Input data is unusable (wrong schema, empty, corrupt beyond the quarantine threshold)."""

    http_status = 422


class StorageError(DriftloopError):
    """The object store refused an operation for a reason retrying will not fix."""

    http_status = 502


class StorageUnavailableError(StorageError):
    """The object store could not be reached or timed out; retrying later may succeed."""

    http_status = 503


class CaptureFullError(StorageUnavailableError):
    """The capture store's local buffer is full: the prediction is refused (503), never dropped later."""

    http_status = 503


class MetadataError(DriftloopError):
    """The metadata database is unreachable, unmigrated or refused an operation."""

    http_status = 503


class PolicyError(DriftloopError):
    """A promotion the policy refuses: a failed check, a missing approval, a losing comparison."""

    http_status = 409


class ApprovalRequiredError(PolicyError):
    """A promotion that passes every gate but still needs a person's ``driftloop approve``: it waits,
    it is not refused on its merits. The headline names the command to run."""


class ServiceError(DriftloopError):
    """A supervised child service (``driftloop up``'s MLflow server, prediction service, scheduler) did
    not become ready or died; the headline names it, its exit status and the end of its log."""

    http_status = 503


class AuthenticationError(DriftloopError):
    """No credentials where auth is on, or a token that is unknown, revoked or expired (401)."""

    http_status = 401


class PermissionDeniedError(DriftloopError):
    """Valid credentials without the role the operation needs (403)."""

    http_status = 403


class RateLimitedError(DriftloopError):
    """Too many requests for one token (or one client address with auth off): retry after
    ``retry_after_s`` seconds (429)."""

    http_status = 429

    def __init__(self, headline: str, retry_after_s: float) -> None:
        super().__init__(headline)
        self.retry_after_s = retry_after_s
