"""What capture records become on the object store: the Parquet schemas and the objects of a segment.

Predictions land under ``captures/model=<name>/date=<day>/``, labels under ``captures/feedback/date=<day>/``
and refused requests under ``captures/rejections/date=<day>/``; predictions and labels join on
``prediction_id``. A :class:`RequestBatch` becomes one prediction row per scored row, each body read back
with the service's own parser (:mod:`driftloop.core.requests`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.capture.records import Feedback, Rejection, RequestBatch, from_trusted
from driftloop.core.requests import JSON, RequestFormatError, prediction_items, request_rows

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from driftloop.capture.records import CaptureRecord

__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_SCHEMA",
    "REJECTION_SCHEMA",
    "conform",
    "expand",
    "parquet_objects",
    "rows_in",
]

PREDICTION_SCHEMA = pa.schema(
    [
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
    ]
)
FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("prediction_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("label", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
# Requests refused with 422: the monitor counts them as schema violations.
REJECTION_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("errors", pa.string(), nullable=False),  # JSON list of {loc, type, msg}
    ]
)
_JSON_COLUMNS = ("inputs", "outputs", "errors")  # object-valued: stored as JSON text


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


def rows_in(records: Iterable[CaptureRecord]) -> int:
    """The rows ``records`` stand for (a request batch: one per scored row)."""
    return sum(len(r.ids) if isinstance(r, RequestBatch) else 1 for r in records)


def parquet_objects(
    records: Iterable[CaptureRecord | Mapping[str, Any]], stem: str
) -> Iterator[tuple[str, bytes]]:
    """The Parquet objects (key, bytes) of one segment's ``records``, one per kind and partition.

    ``ts`` is UTC ISO-8601, so its first ten characters are the partition date. Mappings are taken as
    trusted records (:func:`~driftloop.capture.records.from_trusted`).
    """
    groups: dict[tuple[str, pa.Schema], list[CaptureRecord]] = {}
    for given in records:
        record = from_trusted(given)
        date = record.ts[:10]
        if isinstance(record, Feedback):
            key = (f"captures/feedback/date={date}", FEEDBACK_SCHEMA)
        elif isinstance(record, Rejection):
            key = (f"captures/rejections/date={date}", REJECTION_SCHEMA)
        else:
            key = (f"captures/model={record.model_name}/date={date}", PREDICTION_SCHEMA)
        groups.setdefault(key, []).append(record)
    for (prefix, schema), group in sorted(groups.items(), key=lambda item: item[0][0]):
        values = _columns(schema.names, group)
        columns = [  # ts: ISO text, parsed by Arrow
            pa.array(values[f.name], pa.string() if f.name == "ts" else f.type).cast(f.type) for f in schema
        ]
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_arrays(columns, schema=schema), sink, compression="zstd")
        yield f"{prefix}/{stem}.parquet", sink.getvalue().to_pybytes()


def _columns(names: list[str], records: list[CaptureRecord]) -> dict[str, list[Any]]:
    """Column name → values, built column by column (this runs for every captured row); object-valued
    columns as JSON, UTF-8 bytes, which Arrow takes for its string columns."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for record in records:
        if isinstance(record, RequestBatch):
            _extend_with_batch(columns, record)
            continue
        for name, column in columns.items():
            column.append(getattr(record, name))
    for name in _JSON_COLUMNS:
        if name in columns:
            columns[name] = [orjson.dumps(value) for value in columns[name]]
    return columns


def _extend_with_batch(columns: dict[str, list[Any]], record: RequestBatch) -> None:
    """A request batch's prediction rows appended to prediction ``columns``."""
    n = len(record.ids)
    outputs = _outputs(record)
    columns["prediction_id"].extend(record.ids)
    columns["score"].extend(record.scores)
    columns["shadow_score"].extend(record.shadow_scores or [None] * n)
    columns["shadow_version"].extend([record.shadow_version] * n)
    for name in ("ts", "model_name", "model_version", "fallback"):
        columns[name].extend([getattr(record, name)] * n)
    columns["latency_ms"].extend(_per_row(record, record.latency_ms))
    columns["endpoint"].extend(_per_row(record, record.endpoints))
    columns["inputs"].extend(_request_inputs(record))
    columns["outputs"].extend(outputs)


def _outputs(record: RequestBatch) -> list[dict[str, Any]]:
    """A batch's answer items, by the service's own rule (``core.requests.prediction_items``)."""
    return prediction_items(record.ids, record.scores, record.fallback, record.threshold)


def _request_inputs(record: RequestBatch) -> list[Any]:
    """Every scored row of a batch, in order: each body read back as the service read it, by its media
    type. A body that does not give the rows recorded for it (a bug, never expected) is kept whole rather
    than failing its segment forever: each of its rows gets ``{"unreadable_body": …}``."""
    inputs: list[Any] = []
    media = record.content_types or [JSON] * len(record.bodies)
    for endpoint, body, count, kind in zip(record.endpoints, record.bodies, record.rows, media, strict=True):
        try:
            rows = request_rows(endpoint, body, kind)
        except RequestFormatError:
            rows = []
        if len(rows) != count:
            rows = [{"unreadable_body": bytes(body).decode("utf-8", "replace")}] * count
        inputs.extend(rows)
    return inputs


def _per_row(record: RequestBatch, values: list[Any]) -> list[Any]:
    """A batch's per-request ``values`` repeated for each row of its request."""
    if all(count == 1 for count in record.rows):
        return values
    return [value for value, count in zip(values, record.rows, strict=True) for _ in range(count)]


def expand(record: CaptureRecord | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows a record becomes, as plain mappings with their ``kind``: a request batch → its
    ``prediction`` rows; any other record → itself."""
    typed = from_trusted(record)
    if not isinstance(typed, RequestBatch):
        return [asdict(typed)]
    columns: dict[str, list[Any]] = {name: [] for name in PREDICTION_SCHEMA.names}
    _extend_with_batch(columns, typed)
    return [
        {"kind": "prediction", **dict(zip(columns, row, strict=True))}
        for row in zip(*columns.values(), strict=True)
    ]
