"""Prediction ids (128 random bits and a tag any holder of the key checks) and capture timestamps (the
same values as datetime.isoformat gives)."""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from driftloop.serving import stamps
from driftloop.serving.stamps import IdKeys, PredictionIds, utc_now_iso


def test_ids_are_unique_tagged_hex_across_blocks() -> None:
    pool = PredictionIds(block=8)
    ids = [i for n in (1, 3, 8, 20, 1) for i in pool.take(n)]  # 20 > block: one bigger draw
    assert len(ids) == 33
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{48}", i) for i in ids)
    assert len({i[:32] for i in ids}) == len(ids)  # 128 random bits each, as uuid4
    assert all(pool.known(i) for i in ids)


def _flip(text: str, at: int) -> str:
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1 :]


def test_only_ids_issued_under_the_key_are_known() -> None:
    pool = PredictionIds(IdKeys([b"the fleet's shared secret"]))
    issued = pool.take(50)
    # Another process holding the same secret (a sibling replica, or this one after a restart).
    sibling = PredictionIds(IdKeys([b"the fleet's shared secret"]))
    assert all(sibling.known(i) for i in issued)
    assert not any(PredictionIds(IdKeys([b"another fleet's secret"])).known(i) for i in issued)
    assert not any(PredictionIds().known(i) for i in issued)  # no key given: a random one of its own
    one = issued[0]
    assert not pool.known(_flip(one, 3))  # the random part changed: the tag no longer matches
    assert not pool.known(_flip(one, 40))  # the tag changed
    made_up = [secrets.token_hex(24) for _ in range(200)]
    assert not any(pool.known(i) for i in made_up)
    for malformed in ("", one[:47], one + "0", one.upper(), one[:46] + " 0", "g" * 48, one[:32]):
        assert not IdKeys.well_formed(malformed)
        assert not pool.known(malformed)


def test_a_rotated_key_still_recognises_ids_of_the_previous_one() -> None:
    old = PredictionIds(IdKeys([b"secret of last year"])).take(5)
    rotated = PredictionIds(IdKeys([b"secret of this year", b"secret of last year"]))
    new = rotated.take(5)
    assert all(rotated.known(i) for i in old + new)
    assert not any(PredictionIds(IdKeys([b"secret of last year"])).known(i) for i in new)


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
    assert re.fullmatch(r"[0-9a-f]{48}", child)
    assert pool.known(child)  # the child tags with the same key
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
