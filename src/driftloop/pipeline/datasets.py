"""Training data from a feature version (pipeline, ``train --features``) or any CSV (``train --data``).

Both produce the same :class:`~driftloop.pipeline.modeling.TrainingData`: a time-ordered table of raw
inputs, model-ready ``f_…`` features and the target, plus the fitted transform and lineage tags.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from driftloop.data import transform as transform_mod
from driftloop.data.transform import TransformParams
from driftloop.data.validate import ValidationResult, validate
from driftloop.errors import DataError, UsageError
from driftloop.features import feature_store_for
from driftloop.pipeline.modeling import (
    TAG_FEATURE_VERSION,
    TAG_PIPELINE_RUN,
    TAG_WINDOW,
    TrainingData,
    window_tag,
)
from driftloop.settings import ColumnSpec

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from driftloop.settings import Settings

__all__ = ["from_csv", "from_feature_version", "infer_columns"]

_MAX_CATEGORIES = 100
_NUMBER = r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"


def from_feature_version(settings: Settings, version: str, workdir: Path) -> TrainingData:
    """Pull ``version`` through DVC (seed 17: feature store fetch) and read it as training data."""
    store = feature_store_for(settings)
    full = store.resolve(version)
    info = store.get(full)
    path = store.pull(full, workdir / f"features-{full}.csv")
    params = TransformParams.from_json(store.transform_json(full))
    target = str(info.lineage.get("target", settings.data.target))
    dtypes = {name: "float32" for name in params.feature_names}
    dtypes |= {name: "string" for name in params.categorical}
    table = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    missing = [c for c in [*params.feature_names, target] if c not in table.columns]
    if missing:
        raise DataError(f"feature version {full[:12]} lacks columns {missing}")
    lineage = info.lineage
    tags = {TAG_FEATURE_VERSION: full, TAG_WINDOW: window_tag(lineage.get("window", {}))}
    if lineage.get("pipeline_run"):
        tags[TAG_PIPELINE_RUN] = str(lineage["pipeline_run"])
    return TrainingData(
        table=table,
        feature_names=params.feature_names,
        target=target,
        numeric_inputs=params.numeric,
        categorical_inputs=list(params.categorical),
        transform_json=params.to_json(),
        dataset_name=f"{lineage.get('dataset', settings.data.dataset)}@{full[:12]}",
        source_uri=f"{settings.storage_root.rstrip('/')}/features/versions/{full}/features.csv.dvc",
        tags=tags,
    )


def infer_columns(
    table: pa.Table,
    target: str,
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    timestamp: str | None = None,
    id_column: str | None = None,
) -> tuple[ColumnSpec, ...]:
    """A schema for an arbitrary CSV: declared columns as declared, the rest inferred from the values.

    A column is numeric when every non-empty value parses as a number, categorical when it has at most
    100 distinct values; other text columns (free text, ids) are not model inputs. Without an id column
    a synthetic row number is used.
    """
    names = [n for n in table.column_names if n != target]
    for declared in [*categorical, *numeric, *(c for c in (timestamp, id_column) if c)]:
        if declared not in names:
            raise UsageError(f"column {declared!r} is not in the data (columns: {', '.join(names)})")
    specs = []
    for name in names:
        column = pc.utf8_trim_whitespace(table.column(name).cast(pa.string()))
        empty = pc.fill_null(pc.equal(column, ""), True)
        nullable = bool(pc.any(empty).as_py())
        if name == id_column:
            specs.append(ColumnSpec(name=name, type="string", role="id"))
        elif name == timestamp:
            specs.append(ColumnSpec(name=name, type="timestamp", role="timestamp"))
        elif name in numeric:
            specs.append(ColumnSpec(name=name, type="float", nullable=nullable))
        elif name in categorical:
            specs.append(ColumnSpec(name=name, type="category", nullable=nullable))
        else:
            present = pc.filter(column, pc.invert(empty))
            numeric_share = pc.mean(pc.cast(pc.match_substring_regex(present, _NUMBER), pa.int8())).as_py()
            if numeric_share is not None and numeric_share == 1.0:
                specs.append(ColumnSpec(name=name, type="float", nullable=nullable))
            elif pc.count_distinct(present).as_py() <= _MAX_CATEGORIES:
                specs.append(ColumnSpec(name=name, type="category", nullable=nullable))
    if id_column is None:
        specs.insert(0, ColumnSpec(name="_row_id", type="string", role="id"))
    if not any(s.role == "feature" for s in specs):
        raise DataError(
            "no usable input columns: every column is free text (declare them with --categorical)"
        )
    return tuple(specs)


def from_csv(
    settings: Settings,
    path: Path,
    target: str,
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    timestamp: str | None = None,
    id_column: str | None = None,
) -> tuple[TrainingData, ValidationResult]:
    """Any tabular CSV as training data (seed 1: local development), validated and transformed.

    Rows are taken in time order: sorted by ``timestamp`` when given, else in file order.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not raw.strip():
        raise DataError(f"{path} is empty")
    try:
        # Read every column as text (types are inferred below, per column, with clear rules).
        names = pacsv.open_csv(io.BytesIO(raw)).schema.names
        types = dict.fromkeys(names, pa.string())
        table = pacsv.read_csv(
            io.BytesIO(raw),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot read {path} as CSV: {exc}") from None
    if target not in table.column_names:
        raise UsageError(
            f"target column {target!r} is not in {path.name} (columns: {', '.join(table.column_names)})"
        )
    if table.num_rows == 0:
        raise DataError(f"{path} has a header but no rows")
    specs = infer_columns(
        table, target, categorical=categorical, numeric=numeric, timestamp=timestamp, id_column=id_column
    )
    if id_column is None:
        table = table.append_column("_row_id", pa.array([str(i) for i in range(table.num_rows)], pa.string()))
    task = settings.training.task
    labels = _labels(table.column(target).combine_chunks(), task)
    kind: Literal["binary", "numeric"] = "numeric" if task == "regression" else "binary"
    result = validate(table, specs, label=(target, labels), label_kind=kind)
    valid = result.valid[result.valid[target].notna()].reset_index(drop=True)
    if timestamp:
        valid = valid.sort_values(timestamp, kind="stable").reset_index(drop=True)
    if valid.empty:
        raise DataError(f"no valid labeled rows in {path} ({len(result.rejected)} rejected)")
    fit_rows = max(1, int(len(valid) * (1 - settings.training.holdout_share)))
    params = transform_mod.fit(valid.iloc[:fit_rows], specs, ())
    features = transform_mod.feature_frame(valid, params)
    inputs = [s.name for s in specs if s.role == "feature"]
    table_out = pd.concat([valid[inputs], features, valid[[target]]], axis=1)
    data = TrainingData(
        table=table_out,
        feature_names=params.feature_names,
        target=target,
        numeric_inputs=params.numeric,
        categorical_inputs=list(params.categorical),
        transform_json=params.to_json(),
        dataset_name=path.stem,
        source_uri=path.resolve().as_uri(),
        tags={"driftloop.source": str(path.resolve())},
    )
    return data, result


def _labels(column: pa.Array, task: str) -> pa.Array:
    """Targets as text for validation: classification accepts 0/1 or exactly two classes (mapped sorted)."""
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    if task == "regression":
        return text
    classes = sorted(c for c in pc.unique(text).to_pylist() if c not in (None, ""))
    if set(classes) <= {"0", "1", "0.0", "1.0"}:
        return text
    if len(classes) != 2:
        raise DataError(
            f"classification needs a target with two classes, found {len(classes)}: {classes[:5]}"
            " (set training.task = 'regression' for a numeric target)"
        )
    mapping = pa.array(["0", "1"])
    index = pc.index_in(text, value_set=pa.array(classes))
    return pc.take(mapping, index)
