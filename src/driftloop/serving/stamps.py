"""Prediction ids and capture timestamps, at a cost that stays small at thousands of requests a second.

``uuid4().hex`` is a ``getrandom`` system call per id and ``datetime.now(UTC).isoformat()`` builds two
objects per call; together they were ~10 % of a single-row request's time in the service.

A prediction id is 128 random bits followed by a 64-bit tag: the first half of the AES encryption of
those bits under a key derived from the service's secret (a one-block CBC-MAC, a MAC for messages of
one fixed block length). Any process holding the secret tells an id it (or a sibling replica, or an
earlier run) issued from a made-up one without a lookup, and one AES call tags a whole block of ids
(decision 0041); an HMAC per id cost 2–5 µs here, a large share of a batched row's whole cost.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ID_LENGTH", "IdKeys", "PredictionIds", "utc_now_iso"]

_RANDOM, _TAG = 16, 8  # bytes of an id: its random part, then its tag
ID_LENGTH = 2 * (_RANDOM + _TAG)  # 48 lowercase hex digits
_ID = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")
_KEY_CONTEXT = b"driftloop prediction ids v1\0"


class IdKeys:
    """The keys of prediction ids: the first tags new ids, every one of them recognises ids.

    ``secrets`` are arbitrary bytes (a configured secret, a generated key); each is hashed into an
    AES-128 key with a fixed context, so the same secret gives the same ids' tags everywhere. Like
    :class:`PredictionIds`, one thread uses it at a time (the service's event loop).
    """

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("IdKeys needs at least one secret")
        keys = [hashlib.sha256(_KEY_CONTEXT + secret).digest()[:16] for secret in secrets]
        # ECB over independent 16-byte blocks: each block is one id's tag computation, nothing chains.
        # Tagging and checking keep their own contexts, so neither ever sees the other's state.
        self._tagger = Cipher(algorithms.AES(keys[0]), modes.ECB()).encryptor()
        self._checkers = [Cipher(algorithms.AES(key), modes.ECB()).encryptor() for key in keys]

    @classmethod
    def generate(cls) -> IdKeys:
        """A fresh random key: ids only this object (and its copies) recognises."""
        return cls([os.urandom(32)])

    def issue(self, count: int) -> str:
        """``count`` new ids, concatenated (``ID_LENGTH`` hex digits each)."""
        random = os.urandom(_RANDOM * count)
        tags = self._tagger.update(random)
        ids = np.empty((count, _RANDOM + _TAG), dtype=np.uint8)
        ids[:, :_RANDOM] = np.frombuffer(random, dtype=np.uint8).reshape(count, _RANDOM)
        ids[:, _RANDOM:] = np.frombuffer(tags, dtype=np.uint8).reshape(count, _RANDOM)[:, :_TAG]
        return ids.tobytes().hex()

    @staticmethod
    def well_formed(prediction_id: str) -> bool:
        """``prediction_id`` has the shape of an id: ``ID_LENGTH`` lowercase hex digits."""
        return len(prediction_id) == ID_LENGTH and _ID.fullmatch(prediction_id) is not None

    def known(self, prediction_id: str) -> bool:
        """``prediction_id`` is well formed and its tag is right under one of the keys."""
        if not self.well_formed(prediction_id):
            return False
        raw = bytes.fromhex(prediction_id)
        random, tag = raw[:_RANDOM], raw[_RANDOM:]
        return any(hmac.compare_digest(check.update(random)[:_TAG], tag) for check in self._checkers)


class PredictionIds:
    """Tagged ids (see the module docstring) drawn in blocks: one ``os.urandom`` and one AES call per block.

    Without ``keys`` the ids are tagged with a random key of this object's own. The block is discarded
    in a forked child, so parent and child never hand out the same ids.
    """

    def __init__(self, keys: IdKeys | None = None, block: int = 256) -> None:
        self.keys = keys if keys is not None else IdKeys.generate()
        self._block = block
        self._hex = ""
        self._pos = 0
        _pools.add(self)

    def _discard(self) -> None:
        self._hex, self._pos = "", 0

    def take(self, n: int) -> list[str]:
        """``n`` fresh ids."""
        need = ID_LENGTH * n
        if self._pos + need > len(self._hex):
            self._hex, self._pos = self.keys.issue(max(n, self._block)), 0
        start = self._pos
        self._pos += need
        return [self._hex[i : i + ID_LENGTH] for i in range(start, start + need, ID_LENGTH)]

    def known(self, prediction_id: str) -> bool:
        """``prediction_id`` was issued under one of this pool's keys (by any process holding them)."""
        return self.keys.known(prediction_id)


_pools: weakref.WeakSet[PredictionIds] = weakref.WeakSet()


def _discard_all() -> None:
    for pool in list(_pools):
        pool._discard()


os.register_at_fork(after_in_child=_discard_all)

_second = -1
_prefix = ""


def utc_now_iso() -> str:
    """Now as ``datetime.now(UTC).isoformat(timespec="microseconds")`` writes it (what capture stores),
    formatting the date and time of day once per second."""
    global _second, _prefix  # noqa: PLW0603 — a one-entry cache of the formatted second
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if seconds != _second:
        _prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = seconds
    return f"{_prefix}.{nanos // 1000:06d}+00:00"
