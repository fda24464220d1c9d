"""Running one step inside its isolated process: load inputs, call the function, save outputs, record.

This is what ``driftloop pipeline step NAME --run RUN`` does, whichever executor started it.
"""

from __future__ import annotations

import inspect
import logging
import sys
import traceback
from typing import TYPE_CHECKING

from driftloop.core.runs import StepStatus
from driftloop.errors import DriftloopError
from driftloop.pipeline import catalog
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.records import finish_step, get_run
from driftloop.pipeline.spec import StepContext

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.pipeline.catalog import ArtifactRef
    from driftloop.pipeline.records import RunView
    from driftloop.pipeline.spec import Pipeline, StepSpec
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore
    from driftloop.storage.metadata import Database

__all__ = ["execute_step", "resolve_inputs", "run_step_command", "step_logger"]


def resolve_inputs(run: RunView, spec: StepSpec) -> dict[str, ArtifactRef]:
    """The artifact references a step reads, from its upstream steps' recorded outputs."""
    refs: dict[str, ArtifactRef] = {}
    for arg, ref in spec.inputs.items():
        producer, _, output = ref.partition(".")
        outputs = run.step(producer).outputs
        if output not in outputs:
            raise DriftloopError(f"step {spec.name} needs {ref}, which run {run.id} has not produced")
        refs[arg] = outputs[output]
    return refs


def step_logger(step: str) -> logging.Logger:
    """A logger writing timestamped lines to stderr, which the executor captures into the step log."""
    log = logging.getLogger(f"driftloop.pipeline.step.{step}")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def execute_step(
    settings: Settings, db: Database, store: ObjectStore, pipeline: Pipeline, *, run_id: str, step: str
) -> bool:
    """Execute ``step`` of ``run_id`` in this process and record the outcome. True when it succeeded.

    Failures are recorded on the step (message; traceback in the log) rather than raised, so the runner
    can report them; only an unknown run or step raises.
    """
    run = get_run(db, run_id)
    spec = pipeline.step(step)
    log = step_logger(step)
    params = RunParams.model_validate(run.params)
    ctx = StepContext(run_id=run_id, step=step, params=params, settings=settings, store=store, log=log)
    log.info("run %s step %s starting", run_id, step)
    try:
        refs = resolve_inputs(run, spec)
        inputs = {name: catalog.load(store, ref) for name, ref in refs.items()}
        result = spec.fn(ctx, **inputs)
        saved: dict[str, ArtifactRef] = {}
        for name, output in spec.outputs.items():
            if name not in result.outputs:
                if output.optional:
                    continue
                raise DriftloopError(f"step {step} did not produce its output {name!r}")
            key = catalog.artifact_key(run_id, step, name, output)
            saved[name] = catalog.save(store, key, output.kind, result.outputs[name])
            log.info("saved %s → %s (%d bytes)", name, saved[name].uri, saved[name].size)
    except DriftloopError as exc:
        log.error("step %s failed: %s", step, exc.headline)
        log.debug("%s", traceback.format_exc())
        finish_step(db, run_id, step, StepStatus.FAILED, error=exc.headline)
        return False
    except Exception as exc:
        log.error("step %s crashed:\n%s", step, traceback.format_exc())
        where = _where(exc)
        finish_step(db, run_id, step, StepStatus.FAILED, error=f"{type(exc).__name__}: {exc}{where}")
        return False
    status = StepStatus.FAILED if result.fail else StepStatus.SUCCEEDED
    if result.fail:
        log.error("step %s failed: %s", step, result.fail)
    finish_step(db, run_id, step, status, outputs=saved, summary=result.summary, error=result.fail)
    log.info("run %s step %s %s", run_id, step, status.value)
    return not result.fail


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {inspect.cleandoc(last.filename).rsplit('/', 1)[-1]}:{last.lineno})"


def run_step_command(config: Path | None, run_id: str, step: str) -> int:
    """The body of ``driftloop [--config C] pipeline step STEP --run RUN``; returns its exit code.

    Every executor ends here: the CLI command, a forked step process, a container, a Kubernetes Job.
    """
    from driftloop.pipeline.training import training_pipeline
    from driftloop.settings import load_settings
    from driftloop.storage import store_for
    from driftloop.storage.metadata import Database

    try:
        settings = load_settings(config)
        # The runner that started this step has already migrated the schema; skip Alembic here.
        db = Database(settings.database_url)
        try:
            ok = execute_step(
                settings, db, store_for(settings), training_pipeline(), run_id=run_id, step=step
            )
        finally:
            db.dispose()
    except DriftloopError as exc:
        print(f"error: {exc.headline}", file=sys.stderr)
        return exc.exit_code
    return 0 if ok else 1
