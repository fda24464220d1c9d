"""Validation in the pipeline: every bad row lands in quarantine with its reasons; incidents stop runs."""

from __future__ import annotations

import io

import pandas as pd

from driftloop.core.runs import StepStatus
from driftloop.pipeline import records
from driftloop.pipeline.runner import PipelineFailedError
from tests.pipeline.conftest import Env, params


def _quarantine(env: Env, run_id: str) -> pd.DataFrame:
    data = env.store.read_bytes(f"quarantine/{run_id}/rejected.csv")
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def test_corrupt_and_missing_rows_are_quarantined_with_reasons(env: Env) -> None:
    env.simulate(days=3, rows=2000, drifts=("corrupt:severity=0.01", "missing:severity=0.01"))
    runner, _ = env.runner()
    view = runner.run(params(until="validate"))
    summary = view.step("validate").summary
    quarantine = _quarantine(env, view.id)
    # Nothing lost: every input row is valid or quarantined (unlabeled rows are counted, not dropped).
    assert summary["valid"] + summary["rejected"] == summary["rows_in"] == 6000
    assert len(quarantine) == summary["rejected"]
    reasons = " ".join(quarantine["_reasons"])
    assert ": missing" in reasons  # sensor dropouts
    assert "not a number" in reasons or "below" in reasons or "above" in reasons  # corrupt values
    assert sum(summary["reasons"].values()) >= summary["rejected"]
    # The quarantined rows keep their original text and where they came from.
    assert quarantine["_source"].str.startswith("raw/plant/date=").all()
    assert 0.01 < summary["bad_share"] < 0.05


def test_above_the_threshold_is_a_data_incident_that_keeps_its_quarantine(env: Env) -> None:
    env.simulate(days=2, rows=1000, drifts=("corrupt:severity=0.2",))
    runner, executor = env.runner()
    try:
        runner.run(params())
    except PipelineFailedError as exc:
        message = exc.headline
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("a 20 % corrupt batch must stop the run")
    assert "data incident" in message
    assert "data.max_bad_share" in message
    run_id = message.rsplit(" ", 1)[-1]
    view = records.get_run(env.db, run_id)
    assert view.step("validate").status == StepStatus.FAILED
    assert view.step("transform").status == StepStatus.PENDING
    assert executor.calls == ["ingest", "validate"]
    assert len(_quarantine(env, run_id)) > 300
