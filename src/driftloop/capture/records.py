"""Capture records: their schemas, validation, WAL framing and the Parquet objects they become.

A record is a ``prediction`` or a ``feedback`` label. In the write-ahead log each one is a frame
(4-byte length, 4-byte CRC32, JSON); shipped, they become Parquet objects under
``captures/model=<name>/date=<day>/`` and ``captures/feedback/date=<day>/`` that join on ``prediction_id``.
"""

from __future__ import annotations

import functools
import numbers
import re
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.core.requests import JSON, RequestFormatError, prediction_items, request_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_SCHEMA",
    "REJECTION_SCHEMA",
    "conform",
    "count_rows",
    "decode",
    "encode",
    "expand",
    "normalize",
    "parquet_objects",
    "rows_in",
]

PREDICTION_SCHEMA = pa.schema([
    pa.field("prediction_id", pa.string(), nullable=False),
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.int64(), nullable=False),
    pa.field("inputs", pa.string(), nullable=False),  # JSON object
    pa.field("outputs", pa.string(), nullable=False),  # JSON value
    pa.field("score", pa.float64()),
    pa.field("latency_ms", pa.float64(), nullable=False),
    pa.field("fallback", pa.bool_(), nullable=False),
    pa.field("endpoint", pa.string(), nullable=False),
    # The staging version scored in shadow beside production (never returned to the caller); null when
    # nothing was in shadow. Objects written before these columns existed read back as nulls.
    pa.field("shadow_version", pa.int64()),
    pa.field("shadow_score", pa.float64()),
])  # fmt: skip
FEEDBACK_SCHEMA = pa.schema([
    pa.field("prediction_id", pa.string(), nullable=False),
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("label", pa.float64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
])  # fmt: skip
# Requests refused with 422: the monitor counts them as schema violations.
REJECTION_SCHEMA = pa.schema([
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("endpoint", pa.string(), nullable=False),
    pa.field("rows", pa.int64(), nullable=False),
    pa.field("errors", pa.string(), nullable=False),  # JSON list of {loc, type, msg}
])  # fmt: skip

_HEADER = struct.Struct("<II")  # payload length, CRC32 of the payload
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as registry.model_name: safe in a key


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns in order; nullable columns it lacks (an older object) are nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"capture object lacks the required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=schema)


def count_rows(data: bytes) -> int:
    """The predictions, labels and rejections in a segment's whole records, without reading request
    bodies (what the service does at shipping time: a ``request_batch`` frame's metadata says it)."""
    count = 0
    for payload, _ in _frames(data):
        if payload[:1] == _REQUESTS:
            count += len(_request_meta(payload)[0]["ids"])
            continue
        record = orjson.loads(payload)
        count += rows_in(record if isinstance(record, list) else [record])
    return count


def rows_in(records: list[dict[str, Any]]) -> int:
    """The rows ``records`` stand for (a micro-batch or a request's batch: one per prediction)."""
    return sum(_row_count(r) for r in records)


def _row_count(record: dict[str, Any]) -> int:
    if record["kind"] == "request_batch":
        return len(record["ids"])
    return len(record["outputs"]) if record["kind"] == "prediction_batch" else 1


def parquet_objects(records: list[dict[str, Any]], stem: str) -> Iterator[tuple[str, bytes]]:
    """The Parquet objects (key, bytes) for ``records`` of one WAL segment, one per kind and partition.

    Records are normalised (:func:`normalize`): ``ts`` is UTC ISO-8601, so its first ten characters are
    the partition date. A ``prediction_batch`` becomes its predictions' rows column by column, without
    a dict per prediction (this runs for every captured row).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        date = record["ts"][:10]
        if record["kind"] in ("prediction", "prediction_batch", "request_batch"):
            key = (f"captures/model={record['model_name']}/date={date}", "prediction")
        elif record["kind"] == "rejection":
            key = (f"captures/rejections/date={date}", "rejection")
        else:
            key = (f"captures/feedback/date={date}", "feedback")
        groups.setdefault(key, []).append(record)
    for (prefix, kind), rows in sorted(groups.items()):
        schema = _SCHEMAS[kind]
        values = _columns(schema.names, rows)
        columns = [  # ts: ISO text, parsed by Arrow
            pa.array(values[f.name], pa.string() if f.name == "ts" else f.type).cast(f.type) for f in schema
        ]
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_arrays(columns, schema=schema), sink, compression="zstd")
        yield f"{prefix}/{stem}.parquet", sink.getvalue().to_pybytes()


def _columns(names: list[str], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Column name → values of ``rows`` (a ``prediction_batch`` expands to one value per prediction);
    object-valued columns as JSON (UTF-8 bytes, which Arrow takes for its string columns).

    This runs for every captured row, in the helper: a one-row batch (a single-row request) takes a
    path without per-record lists, and the JSON columns are dumped in one pass at the end."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    if "outputs" in columns:  # predictions
        ids, scores, shadow = columns["prediction_id"], columns["score"], columns["shadow_score"]
        inputs, outputs, shadow_version = columns["inputs"], columns["outputs"], columns["shadow_version"]
        shared = [(name, columns[name]) for name in _BATCH_SHARED]
    for row in rows:
        if row["kind"] == "request_batch":
            n = len(row["ids"])
            ids.extend(row["ids"])
            scores.extend(row["scores"])
            shadow.extend(row.get("shadow_scores") or [None] * n)
            shadow_version.extend([row.get("shadow_version")] * n)
            for name in ("ts", "model_name", "model_version", "fallback"):
                columns[name].extend([row[name]] * n)
            columns["latency_ms"].extend(_per_row(row, row["latency_ms"]))
            columns["endpoint"].extend(_per_row(row, row["endpoints"]))
            inputs.extend(_request_inputs(row))
            outputs.extend(_outputs(row))
            continue
        if row["kind"] != "prediction_batch":
            for name, column in columns.items():
                column.append(row.get(name))
            continue
        batch = row["outputs"]
        n = len(batch)
        shadow_scores = row.get("shadow_scores")
        if n == 1:
            ids.append(batch[0]["id"])
            scores.append(batch[0].get("score"))
            shadow.append(shadow_scores[0] if shadow_scores else None)
            shadow_version.append(row.get("shadow_version"))
            for name, column in shared:
                column.append(row[name])
        else:
            ids.extend([o["id"] for o in batch])
            scores.extend([o.get("score") for o in batch])
            shadow.extend(shadow_scores or [None] * n)
            shadow_version.extend([row.get("shadow_version")] * n)
            for name, column in shared:
                column.extend([row[name]] * n)
        inputs.extend(row["inputs"])
        outputs.extend(batch)
    dumps = orjson.dumps
    for name in ("inputs", "outputs", "errors"):
        if name in columns:
            columns[name] = [dumps(value) for value in columns[name]]
    return columns


_SCHEMAS = {"prediction": PREDICTION_SCHEMA, "feedback": FEEDBACK_SCHEMA, "rejection": REJECTION_SCHEMA}


# The checks run per captured row on the request path: exact-type fast paths before the ABC checks.
def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _real(value: Any) -> bool:
    kind = type(value)
    return kind is float or kind is int or (isinstance(value, numbers.Real) and kind is not bool)


def _count(value: Any) -> bool:
    if type(value) is not int and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
        return False
    return 0 <= int(value) < 2**63


def _object(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


# Per kind: field → (test, what it must be). orjson stores numpy scalars as plain JSON numbers.
_FIELDS: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "prediction": {
        "prediction_id": (_text, "a non-empty string"),
        "model_name": (lambda v: isinstance(v, str) and bool(_MODEL_NAME.match(v)), "a registry model name"),
        "model_version": (_count, "a non-negative integer"),
        "inputs": (_object, "an object"),
        "outputs": (lambda v: _object(v) or isinstance(v, list) or _real(v), "an object, a list or a number"),
        "score": (lambda v: v is None or _real(v), "a number or null"),  # may be left out: null
        "latency_ms": (_real, "a number"),
        "fallback": (lambda v: type(v) is bool, "true or false"),
        "endpoint": (_text, "a non-empty string"),
        "shadow_version": (lambda v: v is None or _count(v), "a non-negative integer or null"),
        "shadow_score": (lambda v: v is None or _real(v), "a number or null"),
    },
    "feedback": {"prediction_id": (_text, "a non-empty string"), "label": (_real, "a number"),
                 "source": (_text, "a non-empty string")},
    "rejection": {"model_name": (_text, "a non-empty string"), "endpoint": (_text, "a non-empty string"),
                  "rows": (_count, "a non-negative integer"),
                  "errors": (lambda v: isinstance(v, list), "a list")},
}  # fmt: skip


_OPTIONAL = frozenset({"score", "shadow_version", "shadow_score"})  # may be left out: null


def normalize(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as it goes into the WAL; ``ValueError`` naming the field when it is malformed.

    Records driftloop builds itself (the service's) skip this: see ``CaptureStore.append_many_async``.
    """
    kind = record.get("kind")
    if kind not in _FIELDS:
        raise ValueError(f"capture record: field 'kind' must be one of {sorted(_FIELDS)}, got {kind!r}")
    fields = _FIELDS[kind]
    unknown = sorted(set(record) - set(fields) - {"kind", "ts"})
    if unknown:
        raise ValueError(f"capture record: unknown field {unknown[0]!r} for kind {kind!r}")
    out: dict[str, Any] = {"kind": kind, "ts": _utc_iso(record.get("ts"))}
    for name, (test, expected) in fields.items():
        if name not in record and name not in _OPTIONAL:
            raise ValueError(f"capture record: field {name!r} is missing")
        value = out[name] = record.get(name)
        if not test(value):
            raise _bad(name, expected, value)
    return out


def _bad(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"capture record: field {name!r} must be {expected}, got {value!r:.80}")


def _utc_iso(value: Any) -> str:
    """An ISO-8601 string or a datetime as a UTC ISO-8601 string; naive values are taken as UTC."""
    if type(value) is str:
        return _utc_iso_text(value)  # the rows of one request share their timestamp: cached
    return _utc_iso_any(value)


@functools.lru_cache(maxsize=64)
def _utc_iso_text(value: str) -> str:
    return _utc_iso_any(value)


def _utc_iso_any(value: Any) -> str:
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        stamp = None
    if not isinstance(stamp, datetime):
        raise _bad("ts", "an ISO-8601 timestamp or a datetime", value)
    return stamp.replace(tzinfo=stamp.tzinfo or UTC).astimezone(UTC).isoformat(timespec="microseconds")


def encode(record: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    """WAL frames holding a record, or a list of records that stand or fall together: one JSON frame
    for the plain records, one binary frame per ``request_batch`` (its bodies are bytes, not JSON)."""
    if isinstance(record, dict):
        return _requests_frame(record) if record["kind"] == "request_batch" else _json_frame(record)
    plain = [r for r in record if r["kind"] != "request_batch"]
    frames = [_json_frame(plain)] if plain else []
    frames += [_requests_frame(r) for r in record if r["kind"] == "request_batch"]
    return b"".join(frames)


def _json_frame(record: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    try:
        payload = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:  # orjson.JSONEncodeError: name the field that cannot be encoded
        for name, value in (record if isinstance(record, dict) else record[0]).items():
            try:
                orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError:
                raise ValueError(f"capture record: field {name!r} is not JSON-serializable: {exc}") from None
        raise ValueError(f"capture record is not JSON-serializable: {exc}") from None
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


# A request_batch frame's payload: this marker (never the first byte of JSON), the length of the
# metadata, the metadata as JSON (with "sizes", the length of each body), then the bodies as received.
_REQUESTS = b"\x01"
_META_LENGTH = struct.Struct("<I")


def _requests_frame(record: dict[str, Any]) -> bytes:
    meta = dict(record)
    bodies = meta.pop("bodies")
    meta["sizes"] = [len(body) for body in bodies]
    try:
        head = orjson.dumps(meta)
    except TypeError as exc:
        raise ValueError(f"capture record is not JSON-serializable: {exc}") from None
    payload = b"".join([_REQUESTS, _META_LENGTH.pack(len(head)), head, *bodies])
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _request_meta(payload: bytes) -> tuple[Any, int]:
    """A request_batch frame's payload → its metadata (JSON) and where the bodies start."""
    (length,) = _META_LENGTH.unpack_from(payload, 1)
    start = 1 + _META_LENGTH.size + length
    return orjson.loads(payload[1 + _META_LENGTH.size : start]), start


def _requests_record(payload: bytes) -> dict[str, Any]:
    """A request_batch frame's payload → its record (bodies as bytes); ValueError if it is malformed."""
    meta, start = _request_meta(payload)
    record: dict[str, Any] = meta
    sizes = record.pop("sizes") if isinstance(record, dict) else None
    if not isinstance(sizes, list) or sum(sizes) != len(payload) - start:
        raise ValueError("a request_batch frame whose bodies do not add up")
    bodies = []
    for size in sizes:
        bodies.append(payload[start : start + size])
        start += size
    record["bodies"] = bodies
    return record


def _request_inputs(record: dict[str, Any]) -> list[Any]:
    """Every scored row of a request_batch, in order: each body read back as the service read it
    (``core.requests``), by its media type (``content_types``, recorded only when a body is not JSON).
    A body that does not give the rows recorded for it (a bug, never expected) is kept whole rather than
    failing its segment forever: each of its rows gets ``{"unreadable_body": …}``."""
    inputs: list[Any] = []
    bodies = record["bodies"]
    media = record.get("content_types") or [JSON] * len(bodies)
    for endpoint, body, count, kind in zip(record["endpoints"], bodies, record["rows"], media, strict=True):
        try:
            rows = request_rows(endpoint, body, kind)
        except RequestFormatError:
            rows = []
        if len(rows) != count:
            rows = [{"unreadable_body": bytes(body).decode("utf-8", "replace")}] * count
        inputs.extend(rows)
    return inputs


def _outputs(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A request_batch's answer items, by the service's own rule (``core.requests.prediction_items``)."""
    return prediction_items(record["ids"], record["scores"], record["fallback"], record["threshold"])


def _per_row(record: dict[str, Any], values: list[Any]) -> list[Any]:
    """A request_batch's per-request ``values`` repeated for each row of its request."""
    counts = record["rows"]
    if all(count == 1 for count in counts):
        return values
    return [value for value, count in zip(values, counts, strict=True) for _ in range(count)]


_BATCH_SHARED = ("ts", "model_name", "model_version", "latency_ms", "fallback", "endpoint")


def expand(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``request_batch`` (the service's micro-batch: request bodies and answers) or a
    ``prediction_batch`` (the rows of one request, shared fields once) → its ``prediction`` records;
    any other record as it is."""
    if record.get("kind") == "request_batch":
        n = len(record["ids"])
        shadow_scores = record.get("shadow_scores") or [None] * n
        columns = zip(
            record["ids"], _request_inputs(record), _outputs(record), shadow_scores,
            _per_row(record, record["latency_ms"]), _per_row(record, record["endpoints"]), strict=True,
        )  # fmt: skip
        return [
            {"kind": "prediction", "prediction_id": pid, "ts": record["ts"],
             "model_name": record["model_name"], "model_version": record["model_version"],
             "inputs": inputs, "outputs": output,
             "score": output["score"], "latency_ms": latency, "fallback": record["fallback"],
             "endpoint": endpoint, "shadow_version": record.get("shadow_version"), "shadow_score": shadow}
            for pid, inputs, output, shadow, latency, endpoint in columns
        ]  # fmt: skip
    if record.get("kind") != "prediction_batch":
        return [record]
    shared = {k: record[k] for k in _BATCH_SHARED}
    shared["shadow_version"] = record.get("shadow_version")
    outputs = record["outputs"]
    shadow = record.get("shadow_scores") or [None] * len(outputs)
    return [
        {"kind": "prediction", "prediction_id": output["id"], "inputs": inputs, "outputs": output,
         "score": output.get("score"), "shadow_score": shadow_score, **shared}
        for inputs, output, shadow_score in zip(record["inputs"], outputs, shadow, strict=True)
    ]  # fmt: skip


def _frames(data: bytes) -> Iterator[tuple[bytes, int]]:
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


def decode(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The records of a segment as written (a ``prediction_batch`` whole: :func:`expand` makes it its
    predictions) up to the first torn or corrupt one, and the offset where that starts."""
    records: list[dict[str, Any]] = []
    pos = 0
    for payload, end in _frames(data):
        try:
            record = _requests_record(payload) if payload[:1] == _REQUESTS else orjson.loads(payload)
        except (ValueError, struct.error):  # orjson.JSONDecodeError is a ValueError
            break
        if isinstance(record, dict):
            records.append(record)
        elif isinstance(record, list) and all(isinstance(r, dict) for r in record):
            records.extend(record)  # records written as one frame (a request's, or a loop iteration's)
        else:
            break
        pos = end
    return records, pos
