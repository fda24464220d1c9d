"""The closed loop's judgement: promotion policy, monitoring and the schedule that drives retraining."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from driftloop.settings._section import Section

__all__ = [
    "CategoricalDriftMethod",
    "FeatureDriftTest",
    "MonitoringSettings",
    "NumericDriftMethod",
    "PolicySettings",
    "ScheduleSettings",
]


class PolicySettings(Section):
    """Promotion gates (seeds 4–6): compliance checks, approval, comparison with production."""

    # Stages a version may enter only after `driftloop approve`.
    require_approval_for: tuple[Literal["staging", "production"], ...] = ("production",)
    # Compliance checks run on None → Staging, by name; `package.module:function` adds your own.
    checks: tuple[str, ...] = (
        "signature",
        "metric_floors",
        "slice_floors",
        "model_size",
        "latency",
        "reproducibility",
        "loads_and_predicts",
    )
    # Checks whose failure is recorded but does not refuse the promotion.
    advisory_checks: tuple[str, ...] = ()
    # Hold-out metric floors (higher-is-better metrics) or ceilings (``rmse``, ``mae``, ``brier``, ``ece``).
    # A version is judged on the bounds of its own task's metrics: classification roc_auc, pr_auc, f1,
    # precision, recall, accuracy, brier, ece; regression r2, rmse, mae (scale-free r2 by default).
    metric_floors: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.85, "r2": 0.5})
    # The same bounds per slice (e.g. per product variant); slices with fewer rows are not judged.
    slice_floors: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.75, "r2": 0.25})
    slice_min_rows: int = Field(default=200, ge=1)
    max_model_mb: float = Field(default=50.0, gt=0)
    max_latency_ms: float = Field(default=50.0, gt=0)  # p95 of a single-row prediction through pyfunc
    require_clean_git: bool = True
    # Staging → Production: evidence that must be present and passing ("offline_comparison" now;
    # the prediction service adds "shadow_comparison").
    production_evidence: tuple[str, ...] = ("offline_comparison",)
    # The challenger may trail the champion by at most this much on the primary metric.
    comparison_margin: float = Field(default=0.005, ge=0)
    # The freshest labelled window both versions are scored on, in days.
    comparison_days: int = Field(default=7, ge=1)
    comparison_min_rows: int = Field(default=500, ge=1)
    # An alias moved outside driftloop (MLflow's API or UI) is always recorded, alerted and never served;
    # on (the default), it is also put back on the audited version (docs/promotion.md, "Gates").
    revert_out_of_band: bool = True
    # Online evidence for an automated promotion: the service scores the staging version in shadow;
    # once this many shadow-scored predictions have labels, both scores are compared (0: no shadow stage).
    shadow_min_labels: int = Field(default=200, ge=0)
    # A candidate whose shadow evidence is still short after this long fails the gate (champion kept).
    shadow_max_hours: float = Field(default=48.0, gt=0)
    # The shadow judgement is sequential (docs/loop.md): at each pass, an anytime-valid confidence
    # sequence for the mean Brier loss difference (challenger − champion) at error rate ``shadow_alpha``;
    # passed once it lies at or below ``shadow_margin``, failed once above, else judged again later.
    shadow_alpha: float = Field(default=0.05, gt=0, lt=0.5)
    shadow_margin: float = Field(default=0.001, ge=0, lt=1)
    # After an automated promotion, the guard watches the new version this long …
    guard_hours: float = Field(default=24.0, gt=0)
    # … and rolls back when its fallback (error) share exceeds this,
    guard_max_error_rate: float = Field(default=0.05, ge=0, le=1)
    # or when, over at least ``guard_min_labels`` labelled predictions, its primary metric falls more
    # than ``guard_margin`` below its offline evaluation.
    guard_min_labels: int = Field(default=200, ge=1)
    guard_margin: float = Field(default=0.05, ge=0)


NumericDriftMethod = Literal["wasserstein", "psi", "ks", "jensenshannon"]
CategoricalDriftMethod = Literal["jensenshannon", "psi", "chisquare"]


class FeatureDriftTest(Section):
    """A per-feature override of the drift test (``[monitoring.features.<name>]``)."""

    method: Literal["wasserstein", "psi", "ks", "jensenshannon", "chisquare"]
    threshold: float = Field(gt=0)  # a distance above it, or a p-value below it, is drift


class MonitoringSettings(Section):
    """Drift, data quality and decay (``driftloop monitor``); see docs/monitoring.md."""

    window: str = Field(default="24h", pattern=r"^\d+[mhd]$")  # the default window, ending now
    # Fewer predictions in a window than this: no drift verdict ("INSUFFICIENT", never a trigger); a
    # feature (or the scores) with fewer non-null values is not tested. A handful of rows decides
    # nothing, whatever a test says.
    min_samples: int = Field(default=200, ge=1)
    # Above this many current rows distance measures decide (p-values flag trivial shifts on large
    # samples, evidentlyai/evidently#50); at or below it, Kolmogorov–Smirnov and chi-square p-values.
    small_sample_rows: int = Field(default=1000, ge=1)
    p_value: float = Field(default=0.05, gt=0, lt=1)
    numeric_method: NumericDriftMethod = "wasserstein"  # normalised by the reference's std
    numeric_threshold: float = Field(default=0.1, gt=0)
    categorical_method: CategoricalDriftMethod = "jensenshannon"
    categorical_threshold: float = Field(default=0.1, gt=0)
    # Calibrated thresholds (decision 0060): a model's reference profile holds what clean chunks of its
    # training data (one per day) score; a feature's distance threshold is the larger of the one above
    # and ``calibration_margin`` × its largest clean score, so a feature that wanders from day to day
    # (the plant's temperatures) is judged against its own variability. False: configured only.
    calibrated_thresholds: bool = True
    calibration_margin: float = Field(default=2.0, ge=1)
    # Per-feature overrides, which win over calibration (none by default).
    features: dict[str, FeatureDriftTest] = Field(default_factory=dict)
    # The dataset drifts when at least this share of features does (weighted by ``importance``).
    drift_share: float = Field(default=0.5, gt=0, le=1)
    importance: dict[str, float] = Field(default_factory=dict)
    # Normalised Wasserstein: most scores sit near 0, where a 10-bin JS is blind to real shifts.
    prediction_method: NumericDriftMethod = "wasserstein"
    prediction_threshold: float = Field(default=0.1, gt=0)
    # Data quality, as shares of the window's rows (requests refused with 422 count as violations).
    max_null_share: float = Field(default=0.05, ge=0, le=1)
    max_out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    max_invalid_share: float = Field(default=0.02, ge=0, le=1)
    # Category values the model never saw (scored in its <other> bucket), per feature.
    max_unknown_share: float = Field(default=0.05, ge=0, le=1)
    # Decay: judged only with at least ``min_labels`` labelled predictions (and both classes present);
    # DECAY when the primary metric falls more than ``decay_margin`` below the model's evaluation.
    min_labels: int = Field(default=200, ge=1)
    decay_metric: str = "roc_auc"
    decay_margin: float = Field(default=0.05, ge=0)
    # Evidence over proxies: when decay was judged (enough labels) and performance holds, data or
    # prediction drift alone is this decision. WARN: reported, no retraining; DRIFT: retrain on drift
    # even though the labels say the model still performs (docs/monitoring.md, decision 0044).
    drift_when_performance_holds: Literal["WARN", "DRIFT"] = "WARN"
    # A label source whose labels contradict the model wholesale (worse than chance, or no better than
    # chance while the other sources agree with it) by this many standard errors is suspicious: its
    # labels are left out of the decay judgement (docs/monitoring.md, decision 0042).
    suspicious_z: float = Field(default=3.0, gt=0)
    chunk_rows: int = Field(default=200_000, ge=1)  # rows per streamed chunk of captures
    # Where the window's statistics are counted: ``local`` streams it in this process; ``ray`` counts
    # the captured Parquet with Ray Data on the cluster at ``ray.address``, one accumulator set per
    # block, merged here (the same accumulators, so the same verdicts; docs/ray.md).
    engine: Literal["local", "ray"] = "local"


class ScheduleSettings(Section):
    """The scheduler and the trigger policy (seeds 12, 21; 002's automated trigger)."""

    # automated: a DRIFT or DECAY decision starts a retraining; manual: it only notifies.
    mode: Literal["automated", "manual"] = "automated"
    monitor_every_minutes: float = Field(default=60.0, gt=0)  # a monitoring pass this often
    # Scheduled retraining, a crontab in UTC (e.g. "0 3 * * 0"); empty: only triggers retrain.
    retrain_cron: str = ""
    retrain_days: int = Field(default=14, ge=1)  # the recent raw window a retraining reads, in days
    # One incident, one retraining: no new trigger-started retraining this soon after the last.
    cooldown_minutes: float = Field(default=360.0, ge=0)
    retrain_delay_hours: float = Field(default=0.0, ge=0)  # let labelled data of the new regime arrive
    # ... or start sooner: as soon as this many labels of the drifted period (from the day the drift
    # was seen) are known (0: the delay alone decides). The delay is then the latest start.
    retrain_min_labels: int = Field(default=0, ge=0)
    gates_every_minutes: float = Field(default=5.0, gt=0)  # re-judge a candidate waiting on shadow
    # The demo's plant: append one simulated day of raw data and labels this often (0: off).
    plant_clock_minutes: float = Field(default=0.0, ge=0)
    notify_webhook: str = ""  # POST each notification as JSON here (empty: log only)
    misfire_grace_s: float = Field(default=300.0, gt=0)  # a fire missed by less than this still runs
    # A trigger being worked on is leased this long, renewed every third of it; a holder that stops
    # renewing (on another host; one on this host is noticed dead at once) is taken over after it.
    trigger_lease_s: float = Field(default=300.0, ge=1)
    # Interrupted this many times (its worker died each time), a retraining is given up, not resumed.
    max_takeovers: int = Field(default=2, ge=0)
