"""The orchestrator: walks the DAG, skips cached steps, dispatches the rest to an executor, resumes.

The runner never touches artifacts itself beyond checking that cached outputs still exist; each step
runs in its executor's isolation and records its own outcome in the metadata database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from driftloop.core.runs import RunStatus, StepStatus
from driftloop.errors import ConflictError, DriftloopError
from driftloop.pipeline import records
from driftloop.pipeline.execute import resolve_inputs, step_logger
from driftloop.pipeline.params import RunParams
from driftloop.pipeline.progress import LogFollower, StepProgress
from driftloop.pipeline.spec import StepContext
from driftloop.storage import join_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from driftloop.pipeline.catalog import ArtifactRef
    from driftloop.pipeline.executors import Executor
    from driftloop.pipeline.records import RunView
    from driftloop.pipeline.spec import Pipeline, StepSpec
    from driftloop.settings import Settings
    from driftloop.storage import ObjectStore
    from driftloop.storage.metadata import Database

__all__ = ["PipelineFailedError", "Runner", "StepEvent"]


class PipelineFailedError(DriftloopError):
    """A step failed; the headline names it, its error and its log, and how to resume."""


@dataclass(frozen=True)
class StepEvent:
    """Progress for displays: a step started, reported progress (epochs, rows: ``progress``), finished,
    was served from cache, or failed."""

    run_id: str
    step: str
    kind: Literal["start", "progress", "done", "cached", "failed"]
    view: records.StepView | None = None
    progress: StepProgress | None = None


class Runner:
    """Runs ``pipeline`` with ``executor``, recording everything in ``db``."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        store: ObjectStore,
        pipeline: Pipeline,
        executor: Executor,
        *,
        on_event: Callable[[StepEvent], None] | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._store = store
        self._pipeline = pipeline
        self._executor = executor
        self._emit = on_event or (lambda _event: None)
        self._watched = on_event is not None  # only then is a running step's log followed

    def create(self, params: RunParams, *, trigger: str = "manual", run_id: str | None = None) -> str:
        """Record a new pending run (so a caller can show its id before it starts); ``run_id``: the id
        to give it (default: a new one)."""
        steps = [s.name for s in self._pipeline.until(params.until)]
        return records.create_run(
            self._db,
            self._pipeline.name,
            params.model_dump(mode="json"),
            steps,
            trigger=trigger,
            run_id=run_id,
        )

    def run(self, params: RunParams, *, trigger: str = "manual") -> RunView:
        """Create and execute a run. Raises :class:`PipelineFailedError` when a step fails."""
        return self.execute(self.create(params, trigger=trigger))

    def resume(self, run_id: str) -> RunView:
        """Continue ``run_id`` from its failed (or interrupted) step with the same parameters."""
        run = records.get_run(self._db, run_id)
        if run.status == RunStatus.SUCCEEDED:
            raise ConflictError(f"run {run_id} already succeeded; nothing to resume")
        records.reset_unfinished(self._db, run_id)
        return self.execute(run_id)

    def execute(self, run_id: str) -> RunView:
        run = records.get_run(self._db, run_id)
        params = RunParams.model_validate(run.params)
        records.start_run(self._db, run_id)
        for view in run.steps:
            if view.status.done:
                continue
            spec = self._pipeline.step(view.step)
            failure = self._run_step(run_id, spec, params)
            if failure is not None:
                records.finish_run(self._db, run_id, RunStatus.FAILED, failure)
                raise PipelineFailedError(
                    f"{failure} — fix it and run: driftloop pipeline run --resume {run_id}"
                )
        records.finish_run(self._db, run_id, RunStatus.SUCCEEDED)
        return records.get_run(self._db, run_id)

    def _run_step(self, run_id: str, spec: StepSpec, params: RunParams) -> str | None:
        """Execute one step (or reuse a cached one). Returns a failure message, or None."""
        run = records.get_run(self._db, run_id)
        inputs = resolve_inputs(run, spec)
        key = self._cache_key(run_id, spec, params, inputs)
        if params.use_cache and key is not None:
            hit = records.find_cached(self._db, spec.name, key)
            if hit is not None and self._outputs_exist(hit[1].outputs):
                source_run, source = hit
                records.finish_step(
                    self._db,
                    run_id,
                    spec.name,
                    StepStatus.CACHED,
                    outputs=source.outputs,
                    summary=source.summary,
                    cached_from=source_run,
                    cache_key=key,
                    inputs=inputs,
                )
                self._emit(
                    StepEvent(run_id, spec.name, "cached", records.get_run(self._db, run_id).step(spec.name))
                )
                return None
        records.start_step(self._db, run_id, spec.name, cache_key=key, inputs=inputs)
        self._emit(StepEvent(run_id, spec.name, "start"))
        log_path = self._settings.home / "logs" / run_id / f"{spec.name}.log"
        with self._following(run_id, spec.name, log_path):
            code, crash = self._dispatch(spec.name, run_id, log_path)
        log_uri = self._publish_log(run_id, spec.name, log_path)
        view = records.get_run(self._db, run_id).step(spec.name)
        if code == 0 and view.status == StepStatus.SUCCEEDED:
            records.finish_step(
                self._db, run_id, spec.name, StepStatus.SUCCEEDED, log_uri=log_uri, error=None
            )
            self._emit(
                StepEvent(run_id, spec.name, "done", records.get_run(self._db, run_id).step(spec.name))
            )
            return None
        error = view.error or crash or f"step process exited with code {code} before recording a result"
        records.finish_step(self._db, run_id, spec.name, StepStatus.FAILED, log_uri=log_uri, error=error)
        self._emit(StepEvent(run_id, spec.name, "failed", records.get_run(self._db, run_id).step(spec.name)))
        return f"step {spec.name} failed: {error} (log: {log_uri})"

    def _dispatch(self, step: str, run_id: str, log_path: Path) -> tuple[int, str | None]:
        """Run the step with the executor: its exit code, and what went wrong if the executor itself
        raised (a bug, an engine's surprise), which fails the step rather than leaving the run
        "running" behind an internal error. The traceback goes to the step log."""
        try:
            return self._executor.run(step, run_id, log_path, self._settings.pipeline.step_timeout_s), None
        except Exception as exc:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("a") as fh:
                fh.write(f"\n[driftloop] the executor failed:\n{traceback.format_exc()}")
            return 1, f"the {type(self._executor).__name__} failed: {type(exc).__name__}: {exc}"

    def _following(self, run_id: str, step: str, log_path: Path) -> contextlib.AbstractContextManager[object]:
        """While a step runs, its log's progress lines as ``progress`` events (when anyone watches)."""
        if not self._watched:
            return contextlib.nullcontext()
        return LogFollower(
            log_path, lambda progress: self._emit(StepEvent(run_id, step, "progress", progress=progress))
        )

    def _cache_key(
        self, run_id: str, spec: StepSpec, params: RunParams, inputs: dict[str, ArtifactRef]
    ) -> str | None:
        material = {
            "step": spec.name,
            "code": spec.code_version(),
            "params": params.subset(spec.params),
            # Validation rules, derived features and thresholds change outputs as much as code does.
            "data": self._settings.data.model_dump(mode="json"),
            "training": self._settings.training.model_dump(mode="json"),
            "inputs": {name: ref.sha256 for name, ref in sorted(inputs.items())},
        }
        if spec.fingerprint is not None:
            ctx = StepContext(run_id, spec.name, params, self._settings, self._store, step_logger(spec.name))
            material["external"] = spec.fingerprint(ctx)
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def _outputs_exist(self, outputs: dict[str, ArtifactRef]) -> bool:
        return all(self._store.exists(ref.key) for ref in outputs.values())

    def _publish_log(self, run_id: str, step: str, path: Path) -> str:
        """Copy the step log next to the run's artifacts so it is readable wherever the store is."""
        key = join_key("pipelines", "runs", run_id, step, "step.log")
        try:
            data = path.read_bytes() if path.exists() else b""
            self._store.write_bytes(key, data)
        except DriftloopError:
            return str(Path(path).resolve())  # the local copy is still there
        return self._store.uri(key)
