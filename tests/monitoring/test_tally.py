"""WindowTally: a window counted in parts and merged is the window counted in one pass."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from driftloop.core.profile import build_profile
from driftloop.errors import DataError
from driftloop.monitoring.assess import WindowTally, assess, judge
from driftloop.monitoring.window import CaptureChunk
from driftloop.settings import ColumnSpec, MonitoringSettings

FIELDS = (
    ColumnSpec(name="record_id", type="string", role="id"),
    ColumnSpec(name="temp", type="float", min=250.0, max=350.0),
    ColumnSpec(name="variant", type="category", allowed=("L", "M", "H")),
)
T0 = np.datetime64(datetime(2026, 3, 1, tzinfo=UTC).replace(tzinfo=None), "us")


def _chunks(rng: np.random.Generator, parts: int, rows: int) -> list[CaptureChunk]:
    chunks = []
    for part in range(parts):
        temp = rng.normal(301, 2, rows)
        temp[::53] = 1e6
        variant = rng.choice(np.array(["L", "M", "H", "X"], dtype=object), rows, p=[0.5, 0.3, 0.15, 0.05])
        ids = [f"rec-{part}-{i}" for i in range(rows)]
        ts = T0 + np.arange(rows) * np.timedelta64(60, "s") + np.timedelta64(part, "D")
        chunks.append(
            CaptureChunk.from_columns(
                {"temp": temp, "variant": variant, "record_id": np.array(ids, dtype=object)},
                rng.beta(2, 8, rows),
                prediction_id=[f"p-{part}-{i}" for i in range(rows)],
                ts=ts,
            )
        )
    return chunks


def test_merged_parts_give_the_one_pass_assessment() -> None:
    rng = np.random.default_rng(5)
    reference = {"temp": rng.normal(300, 2, 4000), "variant": rng.choice(["L", "M", "H"], 4000)}
    profile = build_profile(reference, numeric=["temp"], categorical=["variant"], scores=rng.beta(2, 8, 4000))
    chunks = _chunks(rng, 4, 700)
    labels = {f"rec-{p}-{i}": float(i % 5 == 0) for p in range(4) for i in range(0, 700, 2)}
    cfg = MonitoringSettings(min_labels=100)
    evaluation = {"roc_auc": 0.55, "threshold": 0.3}

    whole = assess(profile, chunks, schema=FIELDS, cfg=cfg, labels=labels, evaluation=evaluation)
    merged = WindowTally(profile, FIELDS, labels=labels)
    for chunk in reversed(chunks):  # in another order, as blocks finish on a cluster
        part = WindowTally(profile, FIELDS, labels=labels)
        part.update(chunk)
        merged.merge(part)
    parts = judge(merged, cfg=cfg, evaluation=evaluation)

    assert parts.decision == whole.decision
    assert parts.reasons == whole.reasons
    assert parts.quality == whole.quality
    assert (parts.rows, parts.start, parts.end) == (whole.rows, whole.start, whole.end)
    assert [(f.name, f.drifted) for f in parts.features] == [(f.name, f.drifted) for f in whole.features]
    for one, two in zip(whole.features, parts.features, strict=True):
        assert two.score == pytest.approx(one.score, rel=1e-9)
    assert whole.performance is not None
    assert parts.performance is not None
    assert parts.performance["labelled"] == whole.performance["labelled"] > 0
    assert parts.performance["metrics"]["roc_auc"] == pytest.approx(whole.performance["metrics"]["roc_auc"])


def test_an_empty_tally_is_no_assessment() -> None:
    profile = build_profile({"temp": np.arange(100.0)}, numeric=["temp"], categorical=[])
    with pytest.raises(DataError, match="no captured predictions"):
        judge(WindowTally(profile, FIELDS), cfg=MonitoringSettings())
