"""The training DAG: ingest → validate → transform → features → train → evaluate → register.

Each step is a thin adapter: it maps the run's parameters and loaded inputs onto the domain code in
``driftloop.data`` and ``driftloop.features`` and returns named outputs for the catalog to save.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.core import transform as transform_mod
from driftloop.data import ingest as ingest_mod
from driftloop.data import validate as validate_mod
from driftloop.errors import DataError
from driftloop.features import store as feature_store_mod
from driftloop.features.store import FeatureStore
from driftloop.pipeline import modeling
from driftloop.pipeline.catalog import arrow_table, to_csv_bytes
from driftloop.pipeline.progress import report
from driftloop.pipeline.spec import Output, Pipeline, StepContext, StepResult, StepSpec
from driftloop.storage import join_key

if TYPE_CHECKING:
    from driftloop.data.ingest import Partition

__all__ = ["TRAINING_STEPS", "training_pipeline"]

_WINDOW = ("dataset", "start", "end", "prefix", "as_of")


def _raw_partitions(ctx: StepContext) -> tuple[list[Partition], list[str]]:
    """The raw files of the run's window, and the days in it that have none (warned, not fatal)."""
    p = ctx.params
    if p.prefix:
        return ingest_mod.list_partitions(ctx.store, p.prefix, None, None), []
    parts = ingest_mod.list_partitions(ctx.store, join_key("raw", p.dataset), p.start, p.end)
    missing: list[str] = []
    if p.start and p.end:
        have = {part.day for part in parts}
        day = p.start
        while day <= p.end:
            if day not in have:
                missing.append(day.isoformat())
            day += timedelta(days=1)
    return parts, missing


def _label_partitions(ctx: StepContext) -> list[Partition]:
    # Labels are partitioned by the day they became known: nothing after as_of can be known yet.
    return ingest_mod.list_partitions(
        ctx.store, join_key("labels", ctx.params.dataset), None, ctx.params.as_of.date()
    )


def ingest_fingerprint(ctx: StepContext) -> str:
    """Cheap identity of the files ingest would read: keys, sizes and modification times."""
    raw, _ = _raw_partitions(ctx)
    infos = {
        i.key: (i.size, i.modified.isoformat()) for i in ctx.store.list(join_key("raw", ctx.params.dataset))
    }
    infos |= {
        i.key: (i.size, i.modified.isoformat())
        for i in ctx.store.list(join_key("labels", ctx.params.dataset))
    }
    listing = [(p.key, infos.get(p.key)) for p in [*raw, *_label_partitions(ctx)]]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def ingest(ctx: StepContext) -> StepResult:
    """Seed 14: raw CSV partitions of the window plus the labels known by ``as_of``."""
    parts, missing_days = _raw_partitions(ctx)
    for day in missing_days:
        ctx.log.warning("no raw partition for %s", day)
    if not parts:
        where = (
            ctx.params.prefix or f"raw/{ctx.params.dataset}/ between {ctx.params.start} and {ctx.params.end}"
        )
        raise DataError(f"no raw data found under {ctx.store.root}/{where}")
    data = ctx.settings.data
    columns = [c.name for c in data.columns]
    id_col = next(c.name for c in data.columns if c.role == "id")
    read = {"files": 0, "rows": 0}

    def read_file(_part: Partition, rows: int) -> None:
        read["files"] += 1
        read["rows"] += rows
        report(ctx.log, read["files"], len(parts), "files", f"{read['rows']:,} rows")

    batch = ingest_mod.read_raw(ctx.store, parts, columns, on_file=read_file)
    label_lines: list[ingest_mod.MalformedLine] = []
    labels, label_hashes = ingest_mod.read_labels(
        ctx.store,
        _label_partitions(ctx),
        id_col,
        data.target,
        ctx.params.as_of,
        on_malformed=label_lines.append,
    )
    for source, absent in batch.missing_columns.items():
        ctx.log.warning("%s lacks columns %s", source, ", ".join(absent))
    manifest = {
        "partitions": {p.key: {"day": p.day.isoformat(), "sha256": batch.hashes[p.key]} for p in parts},
        "label_partitions": label_hashes,
        "missing_days": missing_days,
        "missing_columns": batch.missing_columns,
        "rows": batch.table.num_rows,
        "labels": len(labels),
        # Raw lines count towards the rejected share validation judges; label lines are no raw rows.
        "malformed_lines": len(batch.malformed),
        "malformed_label_lines": len(label_lines),
    }
    outputs: dict[str, Any] = {"raw": batch.table, "labels": labels, "manifest": manifest}
    quarantined = [*batch.malformed, *label_lines]
    if quarantined:
        first = quarantined[0]
        ctx.log.warning(
            "%d lines could not be read and are quarantined (the first: %s line %s, %s)",
            len(quarantined),
            first.source,
            first.line,
            first.reason,
        )
        outputs["malformed"] = pd.DataFrame(
            {
                ingest_mod.SOURCE_COLUMN: [m.source for m in quarantined],
                "line": pd.array([m.line for m in quarantined], dtype="Int64"),
                "text": [m.text for m in quarantined],
                validate_mod.REASONS_COLUMN: [m.reason for m in quarantined],
            }
        )
    summary = {
        "files": len(parts),
        "rows": batch.table.num_rows,
        "labels": len(labels),
        "missing_days": len(missing_days),
        "malformed_lines": len(batch.malformed),
        "malformed_label_lines": len(label_lines),
    }
    return StepResult(outputs=outputs, summary=summary)


def validate(ctx: StepContext, raw: pa.Table, labels: pa.Table, manifest: dict[str, Any]) -> StepResult:
    """Seed 15: schema checks with every rejected row quarantined with its reasons; labels joined."""
    data = ctx.settings.data
    id_col = next(c.name for c in data.columns if c.role == "id")
    # Align labels with raw rows by id, in Arrow: position of each raw id among the label ids.
    at = pc.index_in(raw.column(id_col), value_set=labels.column(id_col))
    aligned = pc.take(labels.column(data.target), at)
    result = validate_mod.validate(raw, data.columns, label=(data.target, aligned))
    malformed = int(manifest.get("malformed_lines", 0))
    rows_in = result.rows_in + malformed
    bad = len(result.rejected) + malformed
    bad_share = bad / rows_in if rows_in else 0.0
    labeled = result.valid[data.target].notna()
    valid = result.valid[labeled].reset_index(drop=True)
    valid[data.target] = valid[data.target].astype("int64")
    reasons = dict(sorted(result.reasons.items(), key=lambda kv: -kv[1]))
    if malformed:
        reasons["malformed CSV line"] = malformed
    summary = {
        "rows_in": rows_in,
        "valid": len(result.valid),
        "rejected": bad,
        "bad_share": round(bad_share, 6),
        "unlabeled": int((~labeled).sum()),
        "labeled": len(valid),
        "reasons": reasons,
        "quarantine": ctx.store.uri(f"quarantine/{ctx.run_id}/rejected.csv"),
    }
    fail = None
    if bad_share > data.max_bad_share:
        fail = (
            f"data incident: {bad_share:.1%} of rows rejected "
            f"(limit data.max_bad_share = {data.max_bad_share:.1%}); "
            f"top reason: {next(iter(reasons), '-')}; quarantine: {summary['quarantine']}"
        )
    elif valid.empty:
        fail = "no labeled valid rows to train on (labels not known yet? see --as-of)"
    outputs = {"valid": valid, "rejected": result.rejected, "summary": summary}
    return StepResult(
        outputs=outputs, summary={k: v for k, v in summary.items() if k != "quarantine"}, fail=fail
    )


def transform(ctx: StepContext, valid: pa.Table) -> StepResult:
    """Features and fitted parameters, fitted on the rows before the evaluation hold-out only."""
    data = ctx.settings.data
    ts_col = next((c.name for c in data.columns if c.role == "timestamp"), None)
    id_col = next(c.name for c in data.columns if c.role == "id")
    # Arrow's sort is stable and the input order is deterministic (files by key, rows by line), so
    # sorting on time alone gives one order; the id breaks ties only when there is no timestamp.
    ordered = arrow_table(valid).sort_by([(ts_col or id_col, "ascending")])
    if ts_col:
        # ISO 8601 with milliseconds, 2026-01-01T00:00:01.123Z. Arrow's cast of a naive ms timestamp
        # prints "2026-01-01 00:00:01.123" thirty times faster than strftime; fix the separator and zone.
        naive = pc.cast(ordered.column(ts_col), pa.timestamp("ms"))
        spaced = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
        text = pc.binary_join_element_wise(spaced, pa.scalar("Z"), "")
        ordered = ordered.set_column(ordered.column_names.index(ts_col), ts_col, text)
    frame = ordered.to_pandas()
    # Fit on the rows before the evaluation hold-out only, so evaluation never leaks into the scaling.
    fit_rows = max(1, int(len(frame) * (1 - ctx.settings.training.holdout_share)))
    fitted = transform_mod.fit(frame.iloc[:fit_rows], data.columns, data.derived_features, target=data.target)
    feats = pd.DataFrame(fitted.encode_frame(frame), columns=fitted.feature_names, index=frame.index)
    keep = [c.name for c in data.columns]
    table = pd.concat([frame[keep], feats, frame[[data.target]]], axis=1)
    summary = {"rows": len(table), "features": len(fitted.feature_names), "fitted_on": fit_rows}
    return StepResult(outputs={"features": table, "transform": json.loads(fitted.to_json())}, summary=summary)


def features(
    ctx: StepContext,
    features: pa.Table,
    transform: dict[str, Any],
    validation: dict[str, Any],
    manifest: dict[str, Any],
) -> StepResult:
    """Seeds 16–17: publish the feature table as a DVC-versioned CSV with its lineage."""
    store = FeatureStore(ctx.store, ctx.settings.home / "dvc", ctx.settings.storage.s3)
    lineage = {
        "pipeline_run": ctx.run_id,
        "dataset": ctx.params.dataset,
        "window": ctx.params.subset(_WINDOW),
        "raw_partitions": manifest["partitions"],
        "label_partitions": manifest["label_partitions"],
        "validation": {k: v for k, v in validation.items() if k != "quarantine"},
        "target": ctx.settings.data.target,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.csv"
        path.write_bytes(to_csv_bytes(features))
        version = store.publish(
            path, transform_json=json.dumps(transform, sort_keys=True, indent=2), lineage=lineage
        )
    info = {"id": version.id, "rows": version.rows, "size": version.size, "columns": list(version.columns)}
    return StepResult(outputs={"version": info}, summary={"version": version.id, "rows": version.rows})


def train(ctx: StepContext, version: dict[str, Any]) -> StepResult:
    """Seeds 17–18: fetch the feature version through DVC, train, track everything in MLflow."""
    from driftloop.auth import run_origin
    from driftloop.pipeline.datasets import from_feature_version
    from driftloop.tracking import Tracker

    origin = run_origin(ctx.settings, f"driftloop pipeline run {ctx.run_id}", "JOB")
    tracker = Tracker(ctx.settings, origin=origin)
    with tempfile.TemporaryDirectory() as tmp:
        data = from_feature_version(ctx.settings, version["id"], Path(tmp))
        # This run, not the one that first produced (and cached) the features, is the lineage.
        tags = {**data.tags, modeling.TAG_PIPELINE_RUN: ctx.run_id}

        def progress(record: Any) -> None:
            detail = (
                f"train_loss {record.train_loss:.4f} val_loss {record.val_loss:.4f} "
                f"val_score {record.val_score:.4f}"
            )
            # Out of max_epochs: early stopping ends the count before it (the summary says where).
            report(ctx.log, record.epoch, ctx.settings.training.max_epochs, "epochs", detail)

        outcome = modeling.train_and_log(
            ctx.settings, tracker, data, run_name=f"pipeline {ctx.run_id}", extra_tags=tags, on_epoch=progress
        )
    summary = {
        "mlflow_run": outcome.run_id,
        "epochs": outcome.epochs,
        "best_epoch": outcome.best_epoch,
        "val_score": round(outcome.val_score, 6),
    }
    return StepResult(outputs={"model": {**outcome.to_json(), "tags": tags}}, summary=summary)


def evaluate(ctx: StepContext, model: dict[str, Any], version: dict[str, Any]) -> StepResult:
    """Seed 18: metrics, slices, plots and the reference profile on the time-ordered hold-out."""
    from driftloop.pipeline.datasets import from_feature_version
    from driftloop.tracking import Tracker

    outcome = modeling.TrainOutcome.from_json({k: v for k, v in model.items() if k != "tags"})
    with tempfile.TemporaryDirectory() as tmp:
        data = from_feature_version(ctx.settings, version["id"], Path(tmp))
        evaluation = modeling.evaluate_and_log(ctx.settings, Tracker(ctx.settings), data, outcome)
    overall = evaluation["overall"]
    summary = {
        k: round(v, 6)
        for k, v in overall.items()
        if k in ("roc_auc", "pr_auc", "f1", "rmse") and v is not None
    }
    return StepResult(outputs={"evaluation": evaluation}, summary=summary)


def register(ctx: StepContext, model: dict[str, Any], evaluation: dict[str, Any]) -> StepResult:
    """Seed 19: a new version of the registered model, stage None, tagged with its lineage."""
    from driftloop.registry import Registry

    outcome = modeling.TrainOutcome.from_json({k: v for k, v in model.items() if k != "tags"})
    name = ctx.settings.registry.model_name
    registered = modeling.register_version(Registry(ctx.settings), name, outcome, model["tags"], evaluation)
    info = {"name": registered.name, "version": registered.version, "run_id": outcome.run_id}
    return StepResult(
        outputs={"registered": info}, summary={"model": f"{registered.name}/{registered.version}"}
    )


TRAINING_STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        name="ingest",
        fn=ingest,
        inputs={},
        outputs={
            "raw": Output("table"),
            "labels": Output("table"),
            "manifest": Output("json"),
            "malformed": Output("csv", location="quarantine/{run}/malformed.csv", optional=True),
        },
        params=_WINDOW,
        code=(ingest_mod, "driftloop.data.screen"),
        fingerprint=ingest_fingerprint,
    ),
    StepSpec(
        name="validate",
        fn=validate,
        inputs={"raw": "ingest.raw", "labels": "ingest.labels", "manifest": "ingest.manifest"},
        outputs={
            "valid": Output("table"),
            "rejected": Output("csv", location="quarantine/{run}/rejected.csv"),
            "summary": Output("json"),
        },
        params=("dataset",),
        code=(validate_mod,),
    ),
    StepSpec(
        name="transform",
        fn=transform,
        inputs={"valid": "validate.valid"},
        outputs={"features": Output("table"), "transform": Output("json")},
        code=(transform_mod,),
    ),
    StepSpec(
        name="features",
        fn=features,
        inputs={
            "features": "transform.features",
            "transform": "transform.transform",
            "validation": "validate.summary",
            "manifest": "ingest.manifest",
        },
        outputs={"version": Output("json")},
        params=("dataset",),
        code=(feature_store_mod,),
    ),
    StepSpec(
        name="train",
        fn=train,
        inputs={"version": "features.version"},
        outputs={"model": Output("json")},
        code=(modeling, "driftloop.pipeline.datasets", "driftloop.training.model", "driftloop.training.loop"),
    ),
    StepSpec(
        name="evaluate",
        fn=evaluate,
        inputs={"model": "train.model", "version": "features.version"},
        outputs={"evaluation": Output("json")},
        code=(modeling, "driftloop.training.metrics", "driftloop.training.plots", "driftloop.core.profile"),
    ),
    StepSpec(
        name="register",
        fn=register,
        inputs={"model": "train.model", "evaluation": "evaluate.evaluation"},
        outputs={"registered": Output("json")},
        code=(modeling,),
    ),
)


def training_pipeline() -> Pipeline:
    return Pipeline(name="training", steps=TRAINING_STEPS)
