"""Landed segments: WAL segments shipped as they are, and their compaction into the Parquet captures.

The service does as little as it can on the host that answers requests: its shipper uploads each
sealed WAL segment, zstd-compressed, to ``captures/_landing/<writer>-<segment>.wal.zst``. Turning the
records into Parquet (parsing every request body, building columns: several µs of CPU per captured row)
is *compaction*, done where it does not compete with requests: by the service's compactor once it has
been idle for ``capture.compact_idle_s``, by :meth:`CaptureStore.flush`, and by
``driftloop capture compact``. Readers never compact (decision 0050): :func:`read_captures` converts
landed segments in memory, and the monitoring window reads Parquet only.

Compaction writes :func:`~driftloop.capture.parquet.parquet_objects` under deterministic keys (the
landed segment's stem), and deletes the landed object only once all of them are written. So it is
idempotent and safe to run concurrently (two compactors write the same bytes to the same keys) and a
crash part-way leaves the landed object, which the next compaction redoes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.capture.frames import count_rows, decode
from driftloop.capture.parquet import (
    FEEDBACK_SCHEMA,
    PREDICTION_SCHEMA,
    REJECTION_SCHEMA,
    conform,
    parquet_objects,
    rows_in,
)
from driftloop.errors import NotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from driftloop.storage import ObjectStore

log = logging.getLogger(__name__)

__all__ = [
    "LANDING",
    "QUARANTINE",
    "Compaction",
    "compact",
    "land",
    "landed_objects",
    "landing_key",
    "read_captures",
]

LANDING = "captures/_landing/"
QUARANTINE = "captures/_quarantine/"
_SUFFIX = ".wal.zst"
_CODEC = "zstd"


def landing_key(stem: str) -> str:
    return f"{LANDING}{stem}{_SUFFIX}"


def land(path: Path) -> tuple[int, bytes]:
    """A sealed segment file → its record count and its bytes compressed: what the service ships."""
    data = path.read_bytes()
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, _CODEC) as out:
        out.write(data)
    return count_rows(data), sink.getvalue().to_pybytes()


def landed_objects(data: bytes, stem: str) -> tuple[int, list[tuple[str, bytes]]]:
    """A landed object's bytes → its record count and Parquet objects (key, bytes).

    Raises ``ValueError`` when the object is not a whole compressed segment (a landed object is
    written whole, so this means someone else wrote under ``captures/_landing/``).
    """
    try:
        raw = pa.CompressedInputStream(pa.BufferReader(data), _CODEC).read()
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"not a compressed capture segment: {exc}") from None
    records, end = decode(raw)
    if end != len(raw):
        raise ValueError(f"a capture segment with {len(raw) - end} bytes of torn or corrupt records")
    return rows_in(records), list(parquet_objects(records, stem))


@dataclass
class Compaction:
    """What one :func:`compact` pass did."""

    segments: int = 0  # landed objects turned into Parquet (and deleted)
    records: int = 0
    objects: int = 0  # Parquet objects written
    quarantined: int = 0  # objects that were not segments, moved to ``captures/_quarantine/``
    complete: bool = True  # False: stopped by ``proceed`` before every listed segment was done


def compact(
    store: ObjectStore,
    *,
    writer: str | None = None,
    convert: Callable[[bytes, str], tuple[int, list[tuple[str, bytes]]]] = landed_objects,
    proceed: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Compaction:
    """Compact the segments landed in ``store`` (only ``writer``'s, when given), oldest first.

    ``convert`` builds the objects (the service runs it in its helper process); ``proceed`` is asked
    before each segment (the service stops when requests come in); ``progress(done, total)`` after
    each. A segment that vanished meanwhile was compacted by someone else. An object that is not a
    segment (corrupt, or not ours) moves to ``captures/_quarantine/`` beside a ``.reason.txt``, with a
    warning. Raises the store's errors.
    """
    prefix = LANDING + (f"{writer}-" if writer else "")
    keys = sorted(i.key for i in store.list(prefix) if i.key.endswith(_SUFFIX))
    done = Compaction()
    for i, key in enumerate(keys):
        if proceed is not None and not proceed():
            done.complete = False
            break
        _compact_one(store, key, convert, done)
        if progress is not None:
            progress(i + 1, len(keys))
    return done


def _compact_one(
    store: ObjectStore,
    key: str,
    convert: Callable[[bytes, str], tuple[int, list[tuple[str, bytes]]]],
    done: Compaction,
) -> None:
    """One landed object → its Parquet objects, then deleted; or quarantined; or gone already."""
    try:
        data = store.read_bytes(key)
    except NotFoundError:
        return  # compacted by someone else meanwhile
    stem = key[len(LANDING) : -len(_SUFFIX)]
    try:
        count, objects = convert(data, stem)
    except ValueError as exc:  # not a segment we wrote: kept aside with the reason, never dropped
        log.warning("capture: %s is not a capture segment (%s); moved to %s", key, exc, QUARANTINE)
        store.write_bytes(f"{QUARANTINE}{stem}{_SUFFIX}", data)
        store.write_bytes(f"{QUARANTINE}{stem}.reason.txt", f"{key}: {exc}\n".encode())
        store.delete(key)
        done.quarantined += 1
        return
    for object_key, body in objects:
        store.write_bytes(object_key, body)
    store.delete(key)  # only now: every object of the segment is written
    done.segments += 1
    done.records += count
    done.objects += len(objects)


def read_captures(
    store: ObjectStore,
    *,
    kind: Literal["prediction", "feedback", "rejection"] = "prediction",
    model: str | None = None,
) -> pa.Table:
    """Every shipped record of ``kind`` (predictions of ``model`` only, when given), sorted by time.

    The schema is :data:`PREDICTION_SCHEMA`, :data:`FEEDBACK_SCHEMA` or :data:`REJECTION_SCHEMA`.
    Segments landed and not compacted yet are included, converted in memory: reading writes nothing
    (decision 0050). Records still in a WAL are not included. Raises the store's errors.
    """
    if kind == "feedback":
        prefix, schema = "captures/feedback/", FEEDBACK_SCHEMA
    elif kind == "rejection":
        prefix, schema = "captures/rejections/", REJECTION_SCHEMA
    elif kind == "prediction":
        prefix, schema = f"captures/model={model}/" if model else "captures/model=", PREDICTION_SCHEMA
    else:
        raise ValueError(f"kind must be 'prediction', 'feedback' or 'rejection', not {kind!r}")
    # Landed segments first, Parquet second: a compactor writes a segment's objects before it deletes the
    # segment, so a segment gone by the time it is read has its objects in the listing that follows.
    landed = _landed(store)
    keys = [info.key for info in store.list(prefix) if info.key.endswith(".parquet")]
    bodies = [store.read_bytes(key) for key in keys]
    listed = set(keys)
    for stem, data in landed:
        try:
            _, objects = landed_objects(data, stem)
        except ValueError:  # not a segment: compaction quarantines it
            continue
        # Keys are deterministic: an object already compacted is read from Parquet, not twice.
        bodies += [body for key, body in objects if key.startswith(prefix) and key not in listed]
    tables = [conform(pq.read_table(pa.BufferReader(body)), schema) for body in bodies]
    if not tables:
        return schema.empty_table()
    order = [("ts", "ascending")] + ([("prediction_id", "ascending")] if kind != "rejection" else [])
    return pa.concat_tables(tables).sort_by(order)


def _landed(store: ObjectStore) -> list[tuple[str, bytes]]:
    """The landed segments (stem, bytes) still there when read."""
    found = []
    for info in store.list(LANDING):
        if not info.key.endswith(_SUFFIX):
            continue
        try:
            found.append((info.key[len(LANDING) : -len(_SUFFIX)], store.read_bytes(info.key)))
        except NotFoundError:  # compacted meanwhile
            continue
    return found
