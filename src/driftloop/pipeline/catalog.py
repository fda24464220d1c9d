"""Saving and loading step artifacts through the object store, with content hashes.

Tables are Parquet, CSV artifacts (quarantine, feature tables) are CSV, JSON is sorted and indented so
equal content gives equal bytes — and equal hashes, which is what makes the step cache work.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import warnings
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from driftloop.pipeline.artifacts import ArtifactRef
from driftloop.storage import join_key

if TYPE_CHECKING:
    from driftloop.pipeline.spec import ArtifactKind, Output
    from driftloop.storage import ObjectStore

__all__ = ["ArtifactRef", "arrow_table", "artifact_key", "load", "save", "to_csv_bytes"]

_EXT = {"table": "parquet", "json": "json", "csv": "csv"}


def artifact_key(run_id: str, step: str, name: str, output: Output) -> str:
    if output.location:
        return output.location.format(run=run_id, step=step, name=name)
    return join_key("pipelines", "runs", run_id, step, f"{name}.{_EXT[output.kind]}")


def save(store: ObjectStore, key: str, kind: ArtifactKind, value: Any) -> ArtifactRef:
    """Serialise ``value`` (DataFrame or Arrow table for table/csv, dict for json) and write it atomically."""
    data = _encode(kind, value)
    store.write_bytes(key, data)
    return ArtifactRef(
        key=key, uri=store.uri(key), kind=kind, sha256=hashlib.sha256(data).hexdigest(), size=len(data)
    )


def load(store: ObjectStore, ref: ArtifactRef) -> Any:
    """The artifact's value: an Arrow table for tables, a DataFrame for CSV, a dict for JSON."""
    data = store.read_bytes(ref.key)
    if ref.kind == "json":
        return json.loads(data)
    if ref.kind == "table":
        return pq.read_table(io.BytesIO(data))
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def arrow_table(frame: pd.DataFrame | pa.Table) -> pa.Table:
    """``pa.Table.from_pandas`` without the index (Arrow tables pass through)."""
    if isinstance(frame, pa.Table):
        return frame
    with warnings.catch_warnings():
        # pyarrow 25 reads Series.values on tz-aware columns, which pandas 3.1 deprecates; the conversion
        # itself is correct. Scoped to this call so the warning stays an error everywhere else.
        warnings.simplefilter("ignore", category=pd.errors.Pandas4Warning)
        return pa.Table.from_pandas(frame, preserve_index=False)


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with a plain header, strings quoted only where needed, timestamps in ISO 8601."""
    table = arrow_table(frame)
    buf = io.BytesIO()
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(table.column_names)  # quotes a name only if it must
    buf.write(header.getvalue().encode())
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _encode(kind: ArtifactKind, value: Any) -> bytes:
    if kind == "json":
        return json.dumps(value, sort_keys=True, indent=2, default=str).encode()
    if kind == "csv":
        return to_csv_bytes(value)
    buf = io.BytesIO()
    pq.write_table(arrow_table(value), buf, compression="zstd")
    return buf.getvalue()
