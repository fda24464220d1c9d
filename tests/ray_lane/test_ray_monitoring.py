"""``monitoring.engine = "ray"``: a window counted with Ray Data over Parquet on S3 gives the verdicts
the in-process pass gives."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from driftloop.capture.parquet import parquet_objects
from driftloop.capture.records import normalize
from driftloop.core.profile import build_profile
from driftloop.monitoring.assess import WindowTally, assess, judge
from driftloop.monitoring.ray_window import tally_on_ray
from driftloop.monitoring.window import iter_captures
from driftloop.settings import ColumnSpec, MonitoringSettings
from driftloop.storage import open_store

if TYPE_CHECKING:
    from driftloop.monitoring.assess import Assessment
    from driftloop.settings import S3Settings
    from driftloop.storage import ObjectStore

pytestmark = pytest.mark.ray

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FIELDS = (
    ColumnSpec(name="record_id", type="string", role="id"),
    ColumnSpec(name="temp", type="float", min=250.0, max=350.0),
    ColumnSpec(name="speed", type="float"),
    ColumnSpec(name="variant", type="category", allowed=("L", "M", "H")),
)
ROWS = 3000
CHUNK_ROWS = 400  # several blocks per object, several objects: the merge is what is tested


def _columns(rng: np.random.Generator, rows: int, *, speed_shift: float) -> dict[str, np.ndarray]:
    return {
        "temp": rng.normal(300, 2, rows),
        "speed": rng.normal(1500 + speed_shift, 100, rows),
        "variant": rng.choice(np.array(["L", "M", "H"], dtype=object), rows, p=[0.5, 0.3, 0.2]),
    }


def _window(store: ObjectStore, rng: np.random.Generator) -> dict[str, float]:
    """Two days of captured predictions in four segments, speed drifted; returns labels by record id."""
    cols = _columns(rng, ROWS, speed_shift=60.0)
    cols["temp"][::97] = 1e6  # out of range: data quality, kept out of the drift statistics
    scores = np.clip(rng.beta(2, 8, ROWS), 0, 1)
    labels: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    for i in range(ROWS):
        ts = T0 + timedelta(seconds=57 * i)
        inputs = {"record_id": f"rec-{i}", "temp": float(cols["temp"][i]), "speed": float(cols["speed"][i])}
        inputs["variant"] = str(cols["variant"][i]) if i % 50 else None
        record = {
            "kind": "prediction",
            "prediction_id": f"p{i:05d}",
            "ts": ts.isoformat(),
            "model_name": "m",
            "model_version": 1,
            "inputs": inputs,
            "outputs": {"score": float(scores[i])},
            "score": float(scores[i]),
            "latency_ms": 1.0,
            "fallback": i % 101 == 0,
            "endpoint": "/v1/predict",
        }
        records.append(asdict(normalize(record)))
        if i % 3 == 0:
            labels[f"rec-{i}"] = float(rng.random() < scores[i])
    for segment in range(4):
        part = records[segment * ROWS // 4 : (segment + 1) * ROWS // 4]
        for key, data in parquet_objects(part, f"w1-seg-{segment:020d}"):
            store.write_bytes(key, data)
    return labels


def _rounded(value: Any) -> Any:
    """``value`` with floats to 10 significant digits: the engines add the same numbers in another
    order (blocks finish in any order), which changes sums in their last bits and nothing else."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _verdicts(assessment: Assessment) -> dict[str, Any]:
    return _rounded(
        {
            "decision": assessment.decision,
            "reasons": assessment.reasons,
            "rows": assessment.rows,
            "drifted": {f.name: (f.method, f.drifted) for f in assessment.features},
            "dataset": (assessment.dataset.drifted, assessment.dataset.share),
            "prediction": assessment.prediction.drifted if assessment.prediction else None,
            "quality": {k: v for k, v in assessment.quality.items() if k != "features"},
            "quality_features": assessment.quality["features"],
            "performance": assessment.performance,
            "window": (assessment.start, assessment.end),
        }
    )


def test_a_window_counted_with_ray_data_gives_the_in_process_verdicts(
    ray_address: str, s3_settings: S3Settings, s3_bucket: str
) -> None:
    rng = np.random.default_rng(11)
    reference = _columns(rng, 5000, speed_shift=0.0)
    profile = build_profile(
        reference, numeric=["temp", "speed"], categorical=["variant"], scores=rng.beta(2, 8, 5000)
    )
    store = open_store(f"s3://{s3_bucket}/root", s3_settings)
    labels = _window(store, rng)
    cfg = MonitoringSettings(chunk_rows=CHUNK_ROWS, min_labels=100)
    evaluation = {"roc_auc": 0.6, "threshold": 0.3}
    start, end = T0 + timedelta(hours=2), T0 + timedelta(days=2)

    chunks = iter_captures(store, model="m", start=start, end=end, chunk_rows=CHUNK_ROWS, fields=FIELDS)
    local = assess(profile, chunks, schema=FIELDS, cfg=cfg, labels=labels, evaluation=evaluation)
    tally = tally_on_ray(
        store,
        WindowTally(profile, FIELDS, labels=labels),
        address=ray_address,
        model="m",
        start=start,
        end=end,
        chunk_rows=CHUNK_ROWS,
        fields=FIELDS,
    )
    on_ray = judge(tally, cfg=cfg, evaluation=evaluation)

    assert _verdicts(on_ray) == _verdicts(local)
    assert local.rows < ROWS  # the window cut rows off: the blocks were filtered to it
    assert {f.name for f in local.features if f.drifted} == {"speed"}  # the drift a test can see
    for one, two in zip(local.features, on_ray.features, strict=True):
        assert two.score == pytest.approx(one.score, rel=1e-9)
