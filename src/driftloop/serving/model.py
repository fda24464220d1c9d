"""The served model: loading ``models:/NAME@production`` with its transform, warm-up, hot swap, fallback.

:class:`ModelHolder` keeps the current version and the previous one. A swap replaces one reference, so
a request that already picked up the old model finishes on it; the new version is loaded and warmed
up first, off the request path. When the current model raises while predicting, the previous version
answers and the response says so (fallback).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.core.labels import TASK_TAG, LabelSpec
from driftloop.core.profile import PROFILE_ARTIFACT
from driftloop.core.transform import Transform
from driftloop.errors import DriftloopError, NotFoundError
from driftloop.serving.inputs import InputSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import torch

    from driftloop.registry import Registry
    from driftloop.settings import Settings
    from driftloop.tracking import Tracker

__all__ = ["LoadedModel", "ModelHolder", "NoModelError", "Prediction", "load_version"]

log = logging.getLogger(__name__)


class NoModelError(DriftloopError):
    """No model can answer (none loaded yet, or the model and its fallback both failed)."""

    http_status = 503


@dataclass
class LoadedModel:
    """One registered version, ready to score raw rows."""

    name: str
    version: int
    run_id: str | None
    spec: InputSpec
    module: torch.nn.Module
    threshold: float | None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The ONNX Runtime fast path (same scores within 1e-5, checked when built); None: torch only.
    fast: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    fast_error: str | None = None  # why the fast path is off, when it was tried
    labels: LabelSpec = field(default_factory=LabelSpec)  # what POST /v1/feedback accepts as its labels

    @property
    def engine(self) -> str:
        return "onnxruntime" if self.fast is not None else "torch"

    def score(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.score_features(self.spec.features(rows))

    def score_features(self, features: np.ndarray) -> np.ndarray:
        fast = self.fast
        if fast is not None:
            try:
                return fast(features)
            except Exception as exc:  # never worse than torch: drop the fast path and answer with torch
                self.fast, self.fast_error = None, f"onnxruntime failed while scoring: {exc}"
                log.exception(
                    "%s/%s: %s; scoring with torch from now on", self.name, self.version, self.fast_error
                )
        return self.score_torch(features)

    def score_torch(self, features: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        with torch.inference_mode():
            out: torch.Tensor = self.module(tensor)
        scores: np.ndarray = out.numpy().astype(np.float64).reshape(-1)
        return scores

    def accelerate(self) -> None:
        """Switch to the ONNX Runtime fast path when it reproduces torch; otherwise say why, keep torch."""
        from driftloop.serving.onnx import OnnxScorer, OnnxUnavailable

        try:
            self.fast = OnnxScorer.build(self.module, len(self.spec.transform.feature_names))
        except OnnxUnavailable as exc:
            self.fast_error = exc.headline
            log.warning("%s/%s scores with torch: %s", self.name, self.version, exc.headline)

    def warm_up(self) -> None:
        """Score one synthetic row through the whole path, so the first request is not the slow one."""
        transform = self.spec.transform
        row: dict[str, Any] = {n.name: n.fill for n in transform.numeric}
        row |= {c.name: c.levels[0] if c.levels else "warm-up" for c in transform.categorical}
        scores = self.score([row])
        if scores.shape != (1,) or not np.isfinite(scores).all():
            raise DriftloopError(f"{self.name}/{self.version} warm-up produced {scores!r}")


def load_version(
    settings: Settings, tracker: Tracker, registry: Registry, name: str, version: int
) -> LoadedModel:
    """Load and warm up ``name/version``: the torch module, the fitted transform, the threshold.

    With ``serving.onnx`` the module is also exported to ONNX Runtime when that reproduces torch.
    """
    mv = registry.get(name, version)
    if not mv.run_id:
        raise NotFoundError(f"{name}/{version} records no run: its transform is unknown")
    transform = Transform.from_json(tracker.read_bytes(mv.run_id, "transform.json"))
    module = tracker.load_torch_model(mv.source)
    module.eval()
    run = tracker.get_run(mv.run_id)
    model = LoadedModel(
        name=name,
        version=version,
        run_id=mv.run_id,
        spec=InputSpec.build(transform),
        module=module,
        threshold=run.metrics.get("threshold"),
        labels=label_spec(settings, tracker, name, mv.run_id, run.tags.get(TASK_TAG)),
    )
    if settings.serving.onnx:
        model.accelerate()
    model.warm_up()
    return model


def label_spec(settings: Settings, tracker: Tracker, name: str, run_id: str, task: str | None) -> LabelSpec:
    """The label set of model ``name`` trained in ``run_id`` for ``task``: for regression, the band
    configured for it (``serving.label_ranges``, ``serving.label_range``) or derived from its reference
    profile (``driftloop.core.labels``)."""
    cfg = settings.serving
    configured = cfg.label_ranges.get(name, cfg.label_range)
    profile = None
    if task == "regression" and configured is None:
        try:
            profile = json.loads(tracker.read_bytes(run_id, PROFILE_ARTIFACT))
        except NotFoundError:  # trained before profiles existed: any finite label
            profile = None
    return LabelSpec.derive(task, profile, configured)


@dataclass(frozen=True)
class Prediction:
    scores: np.ndarray
    model: LoadedModel
    fallback: bool
    # The staging version's scores for the same rows, for the capture only (never returned to callers).
    shadow: LoadedModel | None = None
    shadow_scores: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> Prediction:
        """The prediction for rows ``start:stop`` of the batch (micro-batching splits one call)."""
        shadow = self.shadow_scores[start:stop] if self.shadow_scores is not None else None
        return Prediction(self.scores[start:stop], self.model, self.fallback, self.shadow, shadow)


@dataclass
class ModelHolder:
    """The current and previous production models, the staging version in shadow, and their swaps."""

    current: LoadedModel | None = None
    previous: LoadedModel | None = None
    shadow: LoadedModel | None = None  # scored beside current on every request, for the comparison
    shadow_failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    swaps: int = 0
    load_failures: int = 0
    fallbacks: int = 0
    _swap_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def install(self, model: LoadedModel) -> None:
        """Make ``model`` current (already loaded and warmed up); the old current becomes the fallback."""
        with self._swap_lock:
            if self.current is not None and self.current.version != model.version:
                self.previous = self.current
            self.current = model
            self.swaps += 1
        log.info("serving %s/%s", model.name, model.version)

    def install_shadow(self, model: LoadedModel | None) -> None:
        """Score ``model`` in shadow from now on (None: stop shadowing)."""
        self.shadow = model
        if model is not None:
            log.info("scoring %s/%s in shadow", model.name, model.version)

    def record_failure(self, message: str) -> None:
        self.load_failures += 1
        self.last_error = message
        self.last_error_at = datetime.now(UTC)
        log.error("%s", message)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Prediction:
        """Score validated rows; on an exception from the current model, the previous one answers."""
        model, fallback = self.current, self.previous  # one read each: a swap mid-request changes nothing
        if model is None:
            raise NoModelError("no model loaded yet (see GET /v1/model)")
        try:
            scores = model.score(rows)
        except Exception as exc:  # any failure of the model itself: that is what the fallback is for
            if fallback is None:
                raise NoModelError(
                    f"{model.name}/{model.version} failed ({exc}) and there is no fallback"
                ) from exc
            log.exception(
                "%s/%s failed; answering with %s/%s",
                model.name,
                model.version,
                fallback.name,
                fallback.version,
            )
            self.fallbacks += 1
            try:
                return Prediction(fallback.score(rows), fallback, fallback=True)
            except Exception as second:
                raise NoModelError(
                    f"{model.name}/{model.version} and its fallback both failed: {second}"
                ) from second
        return self._with_shadow(Prediction(scores, model, fallback=False), rows)

    def _with_shadow(self, prediction: Prediction, rows: Sequence[Mapping[str, Any]]) -> Prediction:
        """Add the shadow version's scores; a failing shadow costs the caller nothing but is counted."""
        shadow = self.shadow
        if shadow is None or shadow.version == prediction.model.version:
            return prediction
        try:
            shadow_scores = shadow.score(rows)
        except Exception:  # the challenger failing is evidence against it, never an error for the caller
            self.shadow_failures += 1
            log.exception("shadow %s/%s failed to score", shadow.name, shadow.version)
            return prediction
        return Prediction(prediction.scores, prediction.model, False, shadow, shadow_scores)

    def describe(self) -> dict[str, Any]:
        def one(m: LoadedModel | None) -> dict[str, Any] | None:
            if m is None:
                return None
            return {
                "name": m.name,
                "version": m.version,
                "run_id": m.run_id,
                "loaded_at": m.loaded_at.isoformat(),
                "inputs": m.spec.fields,
                "threshold": m.threshold,
                "engine": m.engine,
                "engine_note": m.fast_error,
            }

        return {
            "current": one(self.current),
            "fallback": one(self.previous),
            "swaps": self.swaps,
            "shadow": one(self.shadow),
            "shadow_failures": self.shadow_failures,
            "load_failures": self.load_failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }


class Follower:
    """Polls the registry alias and hot-swaps to the version it points at (in a background thread).

    ``shadow``: follow into the holder's shadow slot instead (the staging alias); when the alias goes
    away, shadowing stops.
    """

    def __init__(
        self,
        holder: ModelHolder,
        resolve: Callable[[], int | None],
        load: Callable[[int], LoadedModel],
        interval_s: float,
        *,
        shadow: bool = False,
    ) -> None:
        self._holder = holder
        self._shadow = shadow
        self._resolve = resolve
        self._load = load
        self._interval = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()  # a registry event: check now rather than at the next poll
        self._failed: int | None = None  # a version that failed to load is not retried until it changes
        self._thread = threading.Thread(target=self._loop, name="driftloop-model-follower", daemon=True)

    def check_once(self) -> bool:
        """Swap if the alias moved; True when a new version was installed."""
        try:
            wanted = self._resolve()
        except DriftloopError as exc:
            self._holder.record_failure(f"cannot read the registry alias: {exc}")
            return False
        current = self._holder.shadow if self._shadow else self._holder.current
        if wanted is None and self._shadow and current is not None:
            self._holder.install_shadow(None)
            return False
        if wanted is None or (current is not None and current.version == wanted) or wanted == self._failed:
            return False
        started = time.perf_counter()
        try:
            model = self._load(wanted)
        except Exception as exc:  # a bad new version must never take the service down
            self._failed = wanted
            self._holder.record_failure(
                f"version {wanted} failed to load or warm up; still serving "
                f"{current.version if current else 'nothing'}: {exc}"
            )
            return False
        if self._shadow:
            self._holder.install_shadow(model)
        else:
            self._holder.install(model)
        gc.freeze()  # the new model's objects join the long-lived ones the collector skips (see server)
        self._failed = None
        log.info("swapped to version %s in %.2fs", wanted, time.perf_counter() - started)
        return True

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Check the alias now (an MLflow webhook said the registry changed)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.check_once()
