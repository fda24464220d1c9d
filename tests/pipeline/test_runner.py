"""Runner logic — records, cache, failure, resume — on SQLite and PostgreSQL, steps executed in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from driftloop.core.runs import RunStatus, StepStatus
from driftloop.pipeline import records
from driftloop.pipeline.runner import PipelineFailedError
from driftloop.pipeline.spec import Output, Pipeline, StepContext, StepResult, StepSpec
from driftloop.pipeline.training import TRAINING_STEPS
from tests.pipeline.conftest import Env, params

if TYPE_CHECKING:
    import pandas as pd


def test_run_records_every_step_with_hashed_inputs_and_outputs(env: Env) -> None:
    env.simulate()
    runner, executor = env.runner()
    view = runner.run(params())
    assert view.status == RunStatus.SUCCEEDED
    assert executor.calls == ["ingest", "validate", "transform", "features"]
    assert [s.status for s in view.steps] == [StepStatus.SUCCEEDED] * 4
    validate = view.step("validate")
    assert validate.inputs["raw"].sha256 == view.step("ingest").outputs["raw"].sha256
    assert validate.outputs["rejected"].key == f"quarantine/{view.id}/rejected.csv"
    for step in view.steps:
        assert step.started_at is not None
        assert step.finished_at is not None
        assert step.log_uri is not None
    assert view.step("features").summary["version"]
    assert view.params["as_of"].startswith("2026-01-10")


def test_identical_second_run_is_served_from_cache(env: Env) -> None:
    env.simulate()
    runner, executor = env.runner()
    first = runner.run(params())
    executor.calls.clear()
    second = runner.run(params())
    assert executor.calls == []
    assert [s.status for s in second.steps] == [StepStatus.CACHED] * 4
    assert {s.cached_from for s in second.steps} == {first.id}
    assert second.step("features").outputs == first.step("features").outputs


def test_no_cache_forces_every_step(env: Env) -> None:
    env.simulate()
    runner, executor = env.runner()
    runner.run(params())
    executor.calls.clear()
    view = runner.run(params(use_cache=False))
    assert executor.calls == ["ingest", "validate", "transform", "features"]
    assert all(s.status == StepStatus.SUCCEEDED for s in view.steps)


def test_changed_input_misses_the_cache_from_that_step_on(env: Env) -> None:
    env.simulate()
    runner, executor = env.runner()
    runner.run(params())
    # Rewrite one raw partition with one row fewer: ingest must notice, and everything downstream too.
    key = next(i.key for i in env.store.list("raw/plant/"))
    lines = env.store.read_bytes(key).splitlines(keepends=True)
    env.store.write_bytes(key, b"".join(lines[:-1]))
    executor.calls.clear()
    view = runner.run(params())
    assert executor.calls == ["ingest", "validate", "transform", "features"]
    assert view.step("ingest").summary["rows"] == 4 * 1500 - 1


def test_cached_outputs_that_vanished_are_recomputed(env: Env) -> None:
    env.simulate()
    runner, executor = env.runner()
    first = runner.run(params())
    env.store.delete(first.step("transform").outputs["features"].key)
    executor.calls.clear()
    runner.run(params())
    assert "transform" in executor.calls
    assert "ingest" not in executor.calls


def test_until_stops_after_the_named_step(env: Env) -> None:
    env.simulate()
    runner, executor = env.runner()
    view = runner.run(params(until="validate"))
    assert [s.step for s in view.steps] == ["ingest", "validate"]
    assert executor.calls == ["ingest", "validate"]


def _flaky_pipeline(state: dict[str, int]) -> Pipeline:
    def explode(ctx: StepContext, features: pd.DataFrame) -> StepResult:
        state["calls"] += 1
        if state["calls"] == 1:
            raise RuntimeError("disk on fire")
        return StepResult(outputs={"count": {"rows": len(features)}}, summary={"rows": len(features)})

    extra = StepSpec(
        name="count", fn=explode, inputs={"features": "transform.features"}, outputs={"count": Output("json")}
    )
    return Pipeline("flaky", (*TRAINING_STEPS[:3], extra))


def test_a_step_that_raises_fails_the_run_and_resume_finishes_it(env: Env) -> None:
    env.simulate()
    state = {"calls": 0}
    runner, executor = env.runner(_flaky_pipeline(state))
    with pytest.raises(PipelineFailedError) as info:
        runner.run(params(until=None))
    message = info.value.headline
    assert "step count failed: RuntimeError: disk on fire" in message
    assert "log:" in message
    assert "--resume" in message
    run_id = message.rsplit(" ", 1)[-1]
    failed = records.get_run(env.db, run_id)
    assert failed.status == RunStatus.FAILED
    assert failed.step("count").status == StepStatus.FAILED
    assert failed.step("transform").status == StepStatus.SUCCEEDED

    executor.calls.clear()
    resumed = runner.resume(run_id)
    assert executor.calls == ["count"]  # the finished steps are not repeated
    assert resumed.status == RunStatus.SUCCEEDED
    assert resumed.step("count").attempts == 2
    assert resumed.step("count").summary["rows"] > 0


def test_resuming_a_succeeded_run_is_refused(env: Env) -> None:
    from driftloop.errors import ConflictError

    env.simulate(days=2)
    runner, _ = env.runner()
    view = runner.run(params())
    with pytest.raises(ConflictError, match="already succeeded"):
        runner.resume(view.id)


def test_no_data_is_an_error_naming_the_window(env: Env) -> None:
    runner, _ = env.runner()
    with pytest.raises(PipelineFailedError, match="no raw data found"):
        runner.run(params())


def test_missing_partitions_warn_but_do_not_fail(env: Env) -> None:
    from datetime import date

    env.simulate(days=2)
    runner, _ = env.runner()
    view = runner.run(params(start=date(2025, 12, 30), end=date(2026, 1, 2), until="ingest"))
    assert view.status == RunStatus.SUCCEEDED
    assert view.step("ingest").summary["missing_days"] == 2
    manifest = env.store.read_bytes(view.step("ingest").outputs["manifest"].key)
    assert b'"2025-12-30"' in manifest


def test_runs_are_listed_newest_first(env: Env) -> None:
    env.simulate(days=1)
    runner, _ = env.runner()
    a = runner.run(params(until="ingest"))
    b = runner.run(params(until="ingest", use_cache=False))
    assert [r.id for r in records.list_runs(env.db)][:2] == [b.id, a.id]
