from __future__ import annotations

import pytest

from driftloop.errors import StorageError, StorageUnavailableError
from driftloop.storage.retry import retry_transient


def test_transient_errors_are_retried_with_growing_backoff() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StorageUnavailableError("endpoint down")
        return "ok"

    assert retry_transient(flaky, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_last_attempt() -> None:
    sleeps: list[float] = []

    def down() -> None:
        raise StorageUnavailableError("endpoint down")

    with pytest.raises(StorageUnavailableError):
        retry_transient(down, attempts=3, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0]


def test_permanent_errors_are_not_retried() -> None:
    sleeps: list[float] = []

    def denied() -> None:
        raise StorageError("access denied")

    with pytest.raises(StorageError, match="access denied"):
        retry_transient(denied, sleep=sleeps.append)
    assert sleeps == []
