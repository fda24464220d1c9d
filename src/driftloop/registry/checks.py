"""Compliance checks (seed 5): named, pluggable functions from a version's tracked facts to a verdict.

A check is ``check(ctx: CheckContext) -> CheckResult``. The built-ins below are chosen by name in
``policy.checks``; ``package.module:function`` names add your own. A check that raises is a failed check
(its exception is the detail), never a crash of the promotion.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.core.promotion import CheckResult
from driftloop.errors import ConfigError, DriftloopError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.core.models import ModelVersion, TrackedRun
    from driftloop.settings import PolicySettings
    from driftloop.tracking import Tracker
    from driftloop.tracking.tracker import Scorer

__all__ = ["BUILTIN_CHECKS", "CheckContext", "resolve_check", "run_checks"]

# Metrics where smaller is better: their policy bound is a ceiling, not a floor.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "brier", "ece"})
_TASK_METRICS = {
    "classification": {"roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "brier", "ece"},
    "regression": {"rmse", "mae", "r2"},
}


@dataclass
class CheckContext:
    """What a check may look at. The loaded model and artifacts are fetched once and shared."""

    version: ModelVersion
    run: TrackedRun
    tracker: Tracker
    policy: PolicySettings
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.run.tags.get("driftloop.task", "classification")

    def scorer(self) -> Scorer:
        if "scorer" not in self._cache:
            self._cache["scorer"] = self.tracker.load_scorer(self.version.source)
        scorer: Scorer = self._cache["scorer"]
        return scorer

    def artifact_json(self, path: str) -> Any:
        if path not in self._cache:
            self._cache[path] = json.loads(self.tracker.read_bytes(self.run.run_id, path))
        return self._cache[path]


Check = Callable[[CheckContext], CheckResult]


def _bound_ok(metric: str, value: float, bound: float) -> bool:
    return value <= bound if metric in LOWER_IS_BETTER else value >= bound


def _relation(metric: str) -> str:
    return "≤" if metric in LOWER_IS_BETTER else "≥"


def check_signature(ctx: CheckContext) -> CheckResult:
    """The MLflow signature exists and lists exactly the raw inputs of the version's transform, in order
    (the logged model scores raw rows: decision 0032)."""
    names = ctx.scorer().input_names
    expected = [spec["name"] for spec in ctx.artifact_json("transform.json").get("inputs", [])]
    evidence = {"signature_inputs": names, "transform_inputs": expected}
    if not names:
        return CheckResult("signature", False, "the logged model has no input signature", evidence)
    if names != expected:
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        detail = f"signature does not match the transform's inputs (missing {missing}, unexpected {extra})"
        if not missing and not extra:
            detail = "signature lists the inputs in another order than the transform"
        return CheckResult("signature", False, detail, evidence)
    return CheckResult("signature", True, f"{len(names)} raw inputs match the transform", evidence)


def check_metric_floors(ctx: CheckContext) -> CheckResult:
    """Every configured hold-out metric of the model's task is within its bound."""
    relevant = {k: v for k, v in ctx.policy.metric_floors.items() if k in _TASK_METRICS.get(ctx.task, set())}
    failures, values = [], {}
    for metric, bound in sorted(relevant.items()):
        value = ctx.run.metrics.get(f"holdout_{metric}")
        values[metric] = value
        if value is None or not math.isfinite(value):
            failures.append(f"{metric} was not recorded")
        elif not _bound_ok(metric, value, bound):
            failures.append(
                f"{metric} {value:.4f} < floor {bound}"
                if metric not in LOWER_IS_BETTER
                else f"{metric} {value:.4f} > ceiling {bound}"
            )
    evidence = {"values": values, "bounds": relevant}
    if failures:
        return CheckResult("metric_floors", False, "; ".join(failures), evidence)
    shown = ", ".join(f"{k} {values[k]:.4f} {_relation(k)} {b}" for k, b in sorted(relevant.items()))
    return CheckResult("metric_floors", True, shown or "no bounds configured for this task", evidence)


def check_slice_floors(ctx: CheckContext) -> CheckResult:
    """No slice (e.g. product variant) with enough rows falls below its bound."""
    slices: dict[str, dict[str, dict[str, Any]]] = ctx.artifact_json("evaluation/metrics.json").get(
        "slices", {}
    )
    bounds = {k: v for k, v in ctx.policy.slice_floors.items() if k in _TASK_METRICS.get(ctx.task, set())}
    failures, judged, skipped = [], 0, []
    for column, groups in sorted(slices.items()):
        for group, metrics in sorted(groups.items()):
            if int(metrics.get("n", 0)) < ctx.policy.slice_min_rows:
                skipped.append(f"{column}={group}")
                continue
            for metric, bound in sorted(bounds.items()):
                value = metrics.get(metric)
                if value is None:
                    continue  # undefined on this slice (one class): nothing to judge
                judged += 1
                if not _bound_ok(metric, float(value), bound):
                    failures.append(f"{column}={group} {metric} {float(value):.4f} (bound {bound})")
    evidence = {"bounds": bounds, "failures": failures, "judged": judged, "too_small": skipped}
    if failures:
        return CheckResult("slice_floors", False, "below bound: " + "; ".join(failures), evidence)
    return CheckResult("slice_floors", True, f"{judged} slice metrics within bounds", evidence)


def check_model_size(ctx: CheckContext) -> CheckResult:
    size = ctx.tracker.artifact_size(ctx.run.run_id, "model.pth")
    if size is None:
        return CheckResult("model_size", False, "the run has no model.pth state dict")
    mb = size / 1e6
    evidence = {"bytes": size, "budget_mb": ctx.policy.max_model_mb}
    ok = mb <= ctx.policy.max_model_mb
    return CheckResult(
        "model_size", ok, f"{mb:.3f} MB {'≤' if ok else '>'} {ctx.policy.max_model_mb} MB", evidence
    )


def check_latency(ctx: CheckContext, *, calls: int = 30, runs: int = 5, warmup: int = 20) -> CheckResult:
    """p95 of single-row predictions through the loaded pyfunc model, judged so that a busy machine does
    not refuse a fast model: ``warmup`` calls first (lazy initialisation, cold caches), then ``runs``
    runs of ``calls`` each; the verdict is on the median of the runs' p95s, so a burst of load from
    elsewhere that spoils one or two runs does not decide it (decision 0063)."""
    scorer = ctx.scorer()
    if scorer.input_example is None or scorer.input_example.empty:
        return CheckResult("latency", False, "the logged model has no input example to time")
    row = scorer.input_example.iloc[:1]
    for _ in range(warmup):
        scorer.predict(row)
    per_run: list[list[float]] = []
    for _ in range(runs):
        timings = []
        for _ in range(calls):
            start = time.perf_counter()
            scorer.predict(row)
            timings.append((time.perf_counter() - start) * 1000)
        per_run.append(timings)
    run_p95 = [float(np.percentile(t, 95)) for t in per_run]
    p95 = float(np.median(run_p95))
    p50 = float(np.median([np.percentile(t, 50) for t in per_run]))
    ok = p95 <= ctx.policy.max_latency_ms
    evidence = {
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "run_p95_ms": [round(v, 3) for v in run_p95],
        "calls": calls,
        "runs": runs,
        "warmup": warmup,
        "budget_ms": ctx.policy.max_latency_ms,
    }
    return CheckResult(
        "latency",
        ok,
        f"single-row p95 {p95:.2f} ms (median of {runs} runs) {'≤' if ok else '>'} "
        f"{ctx.policy.max_latency_ms} ms",
        evidence,
    )


def check_reproducibility(ctx: CheckContext) -> CheckResult:
    """Enough was recorded to retrain it: a (clean) git commit, a feature version, parameters, a seed."""
    tags, params = ctx.run.tags, ctx.run.params
    problems = []
    commit = tags.get("driftloop.git.commit", "unknown")
    if commit in ("", "unknown"):
        problems.append("no git commit recorded (trained outside a git checkout)")
    elif ctx.policy.require_clean_git and tags.get("driftloop.git.dirty") != "false":
        problems.append(f"trained from a dirty checkout of {commit[:12]} (commit first)")
    if not tags.get("driftloop.feature_version"):
        problems.append("no feature version (trained from a local file)")
    if "seed" not in params:
        problems.append("no seed parameter")
    if "model_factory" not in params:
        problems.append("no training parameters")
    evidence = {
        "git_commit": commit,
        "git_dirty": tags.get("driftloop.git.dirty"),
        "feature_version": tags.get("driftloop.feature_version"),
        "seed": params.get("seed"),
    }
    if problems:
        return CheckResult("reproducibility", False, "; ".join(problems), evidence)
    feature_version = str(evidence["feature_version"])
    detail = f"commit {commit[:12]}, feature version {feature_version[:12]}, seed {evidence['seed']}"
    return CheckResult("reproducibility", True, detail, evidence)


def check_loads_and_predicts(ctx: CheckContext) -> CheckResult:
    """The registered artifacts load as MLflow serving loads them and score the input example sanely."""
    scorer = ctx.scorer()
    example = scorer.input_example
    if example is None or example.empty:
        return CheckResult("loads_and_predicts", False, "the logged model has no input example")
    scores = scorer.predict(example)
    evidence = {"rows": len(example), "scores": [round(float(s), 6) for s in scores[:5]]}
    if scores.shape != (len(example),):
        return CheckResult(
            "loads_and_predicts", False, f"{scores.size} outputs for {len(example)} rows", evidence
        )
    if not np.isfinite(scores).all():
        return CheckResult(
            "loads_and_predicts", False, "non-finite predictions on the input example", evidence
        )
    if ctx.task == "classification" and not ((scores >= 0) & (scores <= 1)).all():
        return CheckResult("loads_and_predicts", False, "classification scores outside [0, 1]", evidence)
    return CheckResult("loads_and_predicts", True, f"loaded and scored {len(example)} example rows", evidence)


BUILTIN_CHECKS: dict[str, Check] = {
    "signature": check_signature,
    "metric_floors": check_metric_floors,
    "slice_floors": check_slice_floors,
    "model_size": check_model_size,
    "latency": check_latency,
    "reproducibility": check_reproducibility,
    "loads_and_predicts": check_loads_and_predicts,
}


def resolve_check(name: str) -> Check:
    """A built-in by name, or ``package.module:function``; :class:`ConfigError` naming ``policy.checks``."""
    if name in BUILTIN_CHECKS:
        return BUILTIN_CHECKS[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        known = ", ".join(BUILTIN_CHECKS)
        raise ConfigError(
            f"policy.checks: unknown check {name!r} (built-in: {known}; or package.module:function)"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"policy.checks: cannot load {name}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"policy.checks: {name} is not a function")
    check: Check = fn
    return check


def run_checks(ctx: CheckContext, names: Sequence[str], advisory: Sequence[str] = ()) -> list[CheckResult]:
    """Run ``names`` in order; every check yields a result, including checks that raise."""
    checks = [(name, resolve_check(name)) for name in names]  # configuration errors before any work
    results = []
    for name, check in checks:
        label = name.rpartition(":")[2]  # a custom check is reported by its function's name
        try:
            result = check(ctx)
        except DriftloopError as exc:
            result = CheckResult(label, False, f"could not be evaluated: {exc}")
        except Exception as exc:  # a user's check may fail any way: that is a failed check, not a crash
            result = CheckResult(label, False, f"raised {type(exc).__name__}: {exc}")
        required = name not in advisory and label not in advisory
        results.append(
            CheckResult(result.name or label, result.passed, result.detail, result.evidence, required)
        )
    return results
