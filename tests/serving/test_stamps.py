"""Prediction ids and capture timestamps: the same values as uuid4().hex and datetime.isoformat give."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from driftloop.serving import stamps
from driftloop.serving.stamps import PredictionIds, utc_now_iso


def test_ids_are_unique_hex_of_128_bits_across_blocks() -> None:
    pool = PredictionIds(block=8)
    ids = [i for n in (1, 3, 8, 20, 1) for i in pool.take(n)]  # 20 > block: one bigger draw
    assert len(ids) == 33
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_does_not_reuse_the_parents_ids() -> None:
    pool = PredictionIds(block=64)
    pool.take(1)  # the parent holds a block of 63 unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, pool.take(1)[0].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child not in pool.take(63)


@pytest.mark.parametrize(
    "ns", [1_795_000_000_000_000_000, 1_795_000_000_999_999_999, 1_795_000_001_000_000_001, 0]
)
def test_timestamps_read_as_datetime_writes_them(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    monkeypatch.setattr(stamps.time, "time_ns", lambda: ns)
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert utc_now_iso() == expected.isoformat(timespec="microseconds")


def test_timestamps_follow_the_clock() -> None:
    before = datetime.now(UTC)
    stamp = datetime.fromisoformat(utc_now_iso())
    assert before <= stamp <= datetime.now(UTC)
