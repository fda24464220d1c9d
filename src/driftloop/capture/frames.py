"""WAL frames: how records are laid out in a segment file, and read back up to the first torn one.

A frame is a 4-byte little-endian payload length, the payload's CRC32 (4 bytes) and the payload: JSON (a
record, or a list of records that stand or fall together), or, for a :class:`RequestBatch`, the byte
``0x01``, a 4-byte length, the batch's JSON metadata (with ``sizes``, each body's length) and the request
bodies as received (they are bytes, not JSON, and copying them into JSON would cost the request path).
"""

from __future__ import annotations

import operator
import struct
import zlib
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import orjson

from driftloop.capture.records import RequestBatch, from_stored

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from driftloop.capture.records import CaptureRecord

__all__ = ["count_rows", "decode", "encode", "encode_one", "whole_frames"]

_HEADER = struct.Struct("<II")  # payload length, CRC32 of the payload
_REQUESTS = b"\x01"  # a RequestBatch payload starts with this, never the first byte of JSON
_META_LENGTH = struct.Struct("<I")
_META_FIELDS = tuple(f.name for f in fields(RequestBatch) if f.name != "bodies")
_meta_values = operator.attrgetter(*_META_FIELDS)  # one C call rather than a getattr loop: request path


def encode_one(record: CaptureRecord) -> bytes:
    """The frame of a single record."""
    if isinstance(record, RequestBatch):
        return _requests_frame(record)
    return _json_frame(record)


def encode(records: Sequence[CaptureRecord]) -> bytes:
    """Frames holding ``records``, which stand or fall together: one JSON frame (a list) for the plain
    records, one binary frame per :class:`RequestBatch`. ``ValueError`` names a field JSON cannot hold."""
    plain: list[CaptureRecord] = [r for r in records if not isinstance(r, RequestBatch)]
    frames = [_json_frame(plain)] if plain else []
    frames += [_requests_frame(r) for r in records if isinstance(r, RequestBatch)]
    return b"".join(frames)


def _json_frame(payload_of: CaptureRecord | list[CaptureRecord]) -> bytes:
    try:
        payload = orjson.dumps(payload_of, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:  # orjson.JSONEncodeError: name the field that cannot be encoded
        first = payload_of if not isinstance(payload_of, list) else payload_of[0]
        for name in (f.name for f in fields(first)):
            try:
                orjson.dumps(getattr(first, name), option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError:
                raise ValueError(f"capture record: field {name!r} is not JSON-serializable: {exc}") from None
        raise ValueError(f"capture record is not JSON-serializable: {exc}") from None
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _requests_frame(record: RequestBatch) -> bytes:
    meta = dict(zip(_META_FIELDS, _meta_values(record), strict=True))  # unset options as nulls
    meta["sizes"] = [len(body) for body in record.bodies]
    try:
        head = orjson.dumps(meta, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise ValueError(f"capture record is not JSON-serializable: {exc}") from None
    payload = b"".join([_REQUESTS, _META_LENGTH.pack(len(head)), head, *record.bodies])
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def whole_frames(data: bytes) -> Iterator[tuple[bytes, int]]:
    """Each whole frame's payload and the offset after it, up to the first torn or corrupt frame."""
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        payload = data[pos + _HEADER.size : end]
        if end > len(data) or zlib.crc32(payload) != crc:
            return
        yield payload, end
        pos = end


def _request_meta(payload: bytes) -> tuple[Any, int]:
    """A RequestBatch payload → its metadata (JSON) and where the bodies start."""
    (length,) = _META_LENGTH.unpack_from(payload, 1)
    start = 1 + _META_LENGTH.size + length
    return orjson.loads(payload[1 + _META_LENGTH.size : start]), start


def _requests_record(payload: bytes) -> CaptureRecord:
    """A RequestBatch payload → the record; ValueError if it is malformed."""
    meta, start = _request_meta(payload)
    sizes = meta.pop("sizes", None) if isinstance(meta, dict) else None
    if not isinstance(sizes, list) or sum(sizes) != len(payload) - start:
        raise ValueError("a request_batch frame whose bodies do not add up")
    bodies = []
    for size in sizes:
        bodies.append(payload[start : start + size])
        start += size
    return from_stored({**meta, "bodies": bodies})


def count_rows(data: bytes) -> int:
    """The rows the whole frames of ``data`` stand for (one per prediction, label or rejection), without
    reading request bodies (what the service counts at shipping time)."""
    count = 0
    for payload, _ in whole_frames(data):
        if payload[:1] == _REQUESTS:
            count += len(_request_meta(payload)[0]["ids"])
            continue
        value = orjson.loads(payload)
        count += len(value) if isinstance(value, list) else 1
    return count


def decode(data: bytes) -> tuple[list[CaptureRecord], int]:
    """The records of a segment up to the first torn, corrupt or unreadable frame, and the offset where
    that frame starts."""
    records: list[CaptureRecord] = []
    pos = 0
    for payload, end in whole_frames(data):
        try:
            if payload[:1] == _REQUESTS:
                records.append(_requests_record(payload))
            else:
                value = orjson.loads(payload)
                items = value if isinstance(value, list) else [value]
                if not all(isinstance(item, dict) for item in items):
                    break
                records.extend([from_stored(item) for item in items])  # the whole frame or none of it
        except (ValueError, struct.error):  # orjson.JSONDecodeError is a ValueError
            break
        pos = end
    return records, pos
