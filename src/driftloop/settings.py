"""The one typed configuration.

Built once per process by :func:`load_settings` and passed down as an argument; nothing reads the
environment at import time. Sources, highest priority first:

1. environment variables ``DRIFTLOOP_<SECTION>__<KEY>`` (nested keys joined by ``__``),
2. the TOML file (``--config PATH``, else ``./driftloop.toml`` when it exists),
3. defaults, which run everything embedded under ``./.driftloop/``.

Relative paths are resolved against the directory of the configuration file, or the working directory
when there is no file. An unknown key or a bad value raises :class:`~driftloop.errors.ConfigError` naming
the key both as it is written in TOML and as an environment variable.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from driftloop.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CONFIG_FILENAME",
    "ENV_PREFIX",
    "PLANT_COLUMNS",
    "TOKEN_ENV",
    "AuthRole",
    "AuthSettings",
    "CaptureSettings",
    "ColumnSpec",
    "ContainerRunnerSettings",
    "DataSettings",
    "DatabaseSettings",
    "FeatureDriftTest",
    "KubernetesRunnerSettings",
    "LocalRunnerSettings",
    "LoggingSettings",
    "MonitoringSettings",
    "PipelineSettings",
    "PolicySettings",
    "RateLimit",
    "RegistrySettings",
    "S3Settings",
    "ScheduleSettings",
    "ServingSettings",
    "Settings",
    "SimulateSettings",
    "StorageSettings",
    "TrackingSettings",
    "TrainingSettings",
    "load_settings",
    "masked_dump",
]

CONFIG_FILENAME = "driftloop.toml"
ENV_PREFIX = "DRIFTLOOP_"
# The token the CLI and SDK act with: a short alias of DRIFTLOOP_AUTH__TOKEN, which wins over it.
TOKEN_ENV = "DRIFTLOOP_TOKEN"
_NESTED = "__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(_Section):
    """How to reach an S3-compatible store (AWS, MinIO, moto, …).

    Credentials left unset fall back to boto3's usual chain (environment, profile, instance role).
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "path"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)


class StorageSettings(_Section):
    """The object store: a local directory or ``s3://bucket/prefix``. Empty means ``<home>``."""

    root: str = ""
    s3: S3Settings = S3Settings()


class DatabaseSettings(_Section):
    """driftloop's own metadata tables. Empty URL means SQLite at ``<home>/driftloop.db``."""

    url: SecretStr = SecretStr("")
    echo: bool = False


# Printable, no control characters, no surrounding blanks.
_COLUMN_NAME = r"^[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"
ColumnType = Literal["float", "int", "bool", "string", "category", "timestamp"]
ColumnRole = Literal["feature", "id", "timestamp", "entity"]


class ColumnSpec(_Section):
    """One raw column: its type, whether it may be empty, its valid range or values, and its role.

    Roles: ``feature`` (model input), ``id`` (unique row key, joins labels and predictions),
    ``timestamp`` (event time, orders the data), ``entity`` (kept for lineage and slicing, not an input).
    Names are the data's own (a CSV header may have blanks or punctuation); control characters and
    surrounding blanks are refused.
    """

    name: str = Field(min_length=1, max_length=200, pattern=_COLUMN_NAME)
    type: ColumnType
    role: ColumnRole = "feature"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name}: min {self.min} is above max {self.max}")
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            raise ValueError(f"column {self.name}: min/max apply to float and int columns only")
        if self.allowed is not None and self.type not in ("category", "string"):
            raise ValueError(f"column {self.name}: allowed values apply to category and string columns only")
        return self


# The simulated plant's raw schema (``driftloop simulate``): the shipped default for ``data.columns``.
PLANT_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(name="timestamp", type="timestamp", role="timestamp"),
    ColumnSpec(name="record_id", type="string", role="id"),
    ColumnSpec(name="machine_id", type="string", role="entity"),
    ColumnSpec(name="product_variant", type="category", allowed=("L", "M", "H")),
    ColumnSpec(name="air_temperature_k", type="float", min=250.0, max=350.0),
    ColumnSpec(name="process_temperature_k", type="float", min=250.0, max=370.0),
    ColumnSpec(name="rotational_speed_rpm", type="int", min=0.0, max=5000.0),
    ColumnSpec(name="torque_nm", type="float", min=0.0, max=200.0),
    ColumnSpec(name="tool_wear_min", type="int", min=0.0, max=400.0),
)


class DataSettings(_Section):
    """Which dataset the loop works on, its raw schema and how strict validation is."""

    dataset: str = Field(default="plant", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    target: str = "machine_failure"
    columns: tuple[ColumnSpec, ...] = PLANT_COLUMNS
    # Derived features by name (see driftloop.data.transform.DERIVED); the plant's by default.
    derived_features: tuple[str, ...] = ("power_w", "temp_diff_k", "strain_min_nm")
    # Above this share of rejected rows the pipeline stops as a data incident instead of training.
    max_bad_share: float = Field(default=0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _roles(self) -> DataSettings:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        if [c.role for c in self.columns].count("id") != 1:
            raise ValueError("exactly one column needs role = 'id' (it joins labels and predictions)")
        if [c.role for c in self.columns].count("timestamp") > 1:
            raise ValueError("at most one column may have role = 'timestamp'")
        if not any(c.role == "feature" for c in self.columns):
            raise ValueError("at least one column needs role = 'feature'")
        if self.target in names:
            raise ValueError(f"target {self.target!r} must come from labels, not be a raw column")
        return self


class SimulateSettings(_Section):
    """Defaults for ``driftloop simulate`` (each is also a command-line option)."""

    machines: int = Field(default=20, ge=1, le=100_000)
    rows_per_day: int = Field(default=5_000, ge=1)
    label_delay_hours: float = Field(default=24.0, ge=0)
    seed: int = Field(default=0, ge=0)


class LocalRunnerSettings(_Section):
    """Each step in its own subprocess on this machine (the default; needs nothing else)."""

    type: Literal["local"] = "local"
    # Fork step processes from a server that has the heavy libraries imported (see LocalExecutor).
    prewarm: bool = True


class ContainerRunnerSettings(_Section):
    """Each step in its own container: ``docker run IMAGE driftloop pipeline step NAME --run RUN``."""

    type: Literal["container"]
    image: str
    executable: str = "docker"  # or podman
    network: str = "host"
    extra_args: tuple[str, ...] = ()


class KubernetesRunnerSettings(_Section):
    """Each step as a Kubernetes Job running the same step command (applied with kubectl)."""

    type: Literal["kubernetes"]
    image: str
    namespace: str = "default"
    service_account: str | None = None
    env_secret: str | None = None  # a Secret whose keys become the step's environment (DRIFTLOOP_…, AWS_…)
    kubectl: str = "kubectl"
    cpu: str = "1"
    memory: str = "2Gi"


RunnerSettings = Annotated[
    LocalRunnerSettings | ContainerRunnerSettings | KubernetesRunnerSettings, Field(discriminator="type")
]


class PipelineSettings(_Section):
    """How pipeline steps are executed."""

    runner: RunnerSettings = LocalRunnerSettings()
    step_timeout_s: float = Field(default=3600.0, gt=0)


HyperValue = int | float | str | bool


class TrainingSettings(_Section):
    """How models are built and trained (seed 1, 18). Hyperparameters reach the model factory."""

    task: Literal["classification", "regression"] = "classification"
    # ``package.module:function`` called as ``factory(input_width, **hyperparameters)`` → ``nn.Module``.
    model_factory: str = Field(default="driftloop.training.model:mlp", pattern=r"^[\w.]+:\w+$")
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    params: dict[str, HyperValue] = Field(default_factory=dict)  # extra factory hyperparameters
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=40, ge=1)
    patience: int = Field(default=5, ge=1)  # early stopping: epochs without validation improvement
    # Time-ordered split: the last ``holdout_share`` of rows is the evaluation hold-out; the last
    # ``validation_share`` of the rest drives early stopping and the decision threshold.
    holdout_share: float = Field(default=0.2, gt=0.0, lt=1.0)
    validation_share: float = Field(default=0.15, gt=0.0, lt=1.0)
    imbalance: Literal["weighted", "none"] = "weighted"
    # A weighted loss inflates probabilities; Platt scaling on the validation part restores calibrated
    # scores (Brier, calibration curve, drift of the score distribution) without changing the ranking.
    calibration: Literal["platt", "none"] = "platt"
    seed: int = Field(default=0, ge=0)
    threads: int = Field(default=1, ge=1)  # torch intra-op threads; 1 keeps runs bit-reproducible


class TrackingSettings(_Section):
    """MLflow tracking. Empty URI: an embedded SQLite store at ``<home>/mlflow.db``."""

    uri: str = ""
    experiment: str = "driftloop"
    # Where new experiments keep artifacts; empty: ``<storage root>/mlflow`` (local or S3).
    artifact_root: str = ""
    # Basic-auth login for an MLflow server that requires one, sent once a password is set
    # (MLFLOW_TRACKING_USERNAME/PASSWORD); with auth on, `up` starts MLflow with this admin (docs/auth.md).
    username: str = "admin"
    password: SecretStr | None = None


class RegistrySettings(_Section):
    """The MLflow registered model the loop trains, promotes and serves."""

    model_name: str = Field(default="plant-failure", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ServingSettings(_Section):
    """The prediction service (``driftloop serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    alias: str = "production"  # the registry alias the service follows
    poll_interval_s: float = Field(default=5.0, gt=0)  # how often it checks the alias for a new version
    max_rows: int = Field(default=10_000, ge=1)  # per request
    # A request body over this is refused with 413 while it is read, never buffered whole: 10,000 rows of
    # ~400 bytes of JSON (the plant's are ~150); parsing the worst body this size (small unknown keys)
    # holds the event loop ~0.25 s (decision 0039). A 422 lists the first ``max_field_errors`` bad fields.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    max_field_errors: int = Field(default=100, ge=1)
    # MLflow webhooks (POST /v1/registry-events) make the swap immediate; with a secret, deliveries
    # must carry MLflow's HMAC signature. Unset: the endpoint accepts unsigned events (local use).
    webhook_secret: SecretStr | None = None
    # Adaptive micro-batching: concurrent requests share one model call of at most ``batch_max_rows``;
    # ``batch_max_wait_ms`` optionally waits to fill a batch, only while requests are arriving together.
    micro_batching: bool = True
    # Score with ONNX Runtime when the model exports and reproduces torch within 1e-5 (else torch).
    onnx: bool = True
    shadow: bool = True  # score the staging version in shadow beside production (promotion evidence)
    batch_max_rows: int = Field(default=256, ge=1)
    batch_max_wait_ms: float = Field(default=0.0, ge=0)
    # POST /v1/feedback (docs/serving.md): labels per request, beyond which the request is a 413.
    max_feedback_rows: int = Field(default=10_000, ge=1)
    # Prediction ids carry a tag computed with this secret, so every replica sharing it recognises the
    # ids any of them issued, across restarts, without a lookup (decision 0041). Unset: a key generated
    # once under <home>, which the workers and restarts of one host share, but not other hosts.
    id_secret: SecretStr | None = None
    # Secrets of earlier ids still accepted after a rotation (labels arrive a day or more later).
    id_previous_secrets: tuple[SecretStr, ...] = ()
    # The band a regression model's labels must fall in, per model name, else for any model; default:
    # derived from the training target (driftloop.core.labels). Classification labels are 0 or 1.
    label_range: tuple[float, float] | None = None
    label_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _feedback(self) -> ServingSettings:
        named = [("label_range", self.label_range)] if self.label_range is not None else []
        named += [(f"label_ranges.{model}", band) for model, band in self.label_ranges.items()]
        for key, (low, high) in named:
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"{key} must be two finite numbers, the lower first, got [{low}, {high}]")
        secrets = [("id_secret", self.id_secret)] if self.id_secret is not None else []
        secrets += [("id_previous_secrets", secret) for secret in self.id_previous_secrets]
        for key, secret in secrets:
            if len(secret.get_secret_value()) < 16:
                raise ValueError(f"{key}: a secret needs at least 16 characters")
        return self


class CaptureSettings(_Section):
    """Every prediction and label: a local WAL, landed on the store, compacted to Parquet (docs/capture.md)"""

    enabled: bool = True  # off: the service captures nothing
    wal_dir: Path | None = None  # the local write-ahead log; empty: ``<home>/capture/wal``
    # When an acknowledged capture is safe (docs/capture.md): "process" — written to the WAL before the
    # response (survives kill -9 and any crash of the service; synced within ``sync_interval_ms``, so a
    # power loss can lose that much); "fsync" — fsynced before the response (survives power loss too).
    durability: Literal["process", "fsync"] = "process"
    sync_interval_ms: float = Field(default=50.0, gt=0)
    # "fsync": appends arriving while the writer is busy share its next write + fsync (group commit); this
    # makes it wait up to so long for more (0: none; under load the groups form by themselves).
    group_commit_ms: float = Field(default=0.0, ge=0)
    segment_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1)  # a segment is sealed and shipped once
    segment_max_age_s: float = Field(default=5.0, gt=0)  # this big or this old, whichever comes first
    # Unshipped bytes kept on local disk; beyond this appends fail (HTTP 503) rather than drop data.
    max_buffer_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    # Shipping retries after a storage failure wait this long, doubling up to ``retry_max_s``.
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    # Landed segments are compacted into Parquet once no capture came for this long (0: never in the
    # service; readers and `driftloop capture compact` do it). Land and compact in a helper process,
    # off the service's GIL (off: in the shipper thread).
    compact_idle_s: float = Field(default=2.0, ge=0)
    convert_in_subprocess: bool = True

    @model_validator(mode="after")
    def _retry_order(self) -> CaptureSettings:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"retry_initial_s {self.retry_initial_s} is above retry_max_s {self.retry_max_s}"
            )
        return self


class LoggingSettings(_Section):
    """driftloop's own log lines (``driftloop.logs``): the services' level; one-shot commands log warnings."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"


class PolicySettings(_Section):
    """Promotion gates (seeds 4–6): compliance checks, approval, comparison with production."""

    # Stages a version may enter only after `driftloop approve`.
    require_approval_for: tuple[Literal["staging", "production"], ...] = ("production",)
    # Compliance checks run on None → Staging, by name; `package.module:function` adds your own.
    checks: tuple[str, ...] = (
        "signature", "metric_floors", "slice_floors", "model_size", "latency", "reproducibility",
        "loads_and_predicts",
    )  # fmt: skip
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


class FeatureDriftTest(_Section):
    """A per-feature override of the drift test (``[monitoring.features.<name>]``)."""

    method: Literal["wasserstein", "psi", "ks", "jensenshannon", "chisquare"]
    threshold: float = Field(gt=0)  # a distance above it, or a p-value below it, is drift


def _plant_feature_tests() -> dict[str, FeatureDriftTest]:
    return {
        name: FeatureDriftTest(method="wasserstein", threshold=1.5)
        for name in ("air_temperature_k", "process_temperature_k")
    }


class MonitoringSettings(_Section):
    """Drift, data quality and decay (``driftloop monitor``); see docs/monitoring.md."""

    window: str = Field(default="24h", pattern=r"^\d+[mhd]$")  # the default window, ending now
    # Above this many current rows distance measures decide (p-values flag trivial shifts on large
    # samples, evidentlyai/evidently#50); at or below it, Kolmogorov–Smirnov and chi-square p-values.
    small_sample_rows: int = Field(default=1000, ge=1)
    p_value: float = Field(default=0.05, gt=0, lt=1)
    numeric_method: NumericDriftMethod = "wasserstein"  # normalised by the reference's std
    numeric_threshold: float = Field(default=0.1, gt=0)
    categorical_method: CategoricalDriftMethod = "jensenshannon"
    categorical_threshold: float = Field(default=0.1, gt=0)
    # Per-feature overrides. The plant's temperatures follow its climate (an AR(1) process with a
    # 3-hour correlation time): a day holds about eight independent readings and its mean wanders by
    # ~0.5 std from day to day, so clean days score up to ~1.1 in normalised Wasserstein (0.45
    # typical). At the generic 0.1 every 24-hour window would flag them; 1.5 sits above that noise.
    features: dict[str, FeatureDriftTest] = Field(default_factory=_plant_feature_tests)
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


class ScheduleSettings(_Section):
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


AuthRole = Literal["view", "predict", "label", "promote", "approve", "admin"]


class RateLimit(_Section):
    """A token bucket: ``per_second`` requests sustained, bursts of up to ``burst`` (0: a second's worth)."""

    per_second: float = Field(gt=0)
    burst: int = Field(default=0, ge=0)


class AuthSettings(_Section):
    """Tokens and roles for the service and the CLI, and per-token rate limits (docs/auth.md)."""

    enabled: bool = False
    token: SecretStr | None = None  # what the CLI/SDK acts with (also DRIFTLOOP_TOKEN)
    # The service trusts a verified token this long before asking the database again: a revoked token
    # is refused at most this much later. 0: every request asks the database.
    cache_s: float = Field(default=5.0, ge=0, le=300)
    # Per token (per client address with auth off), per service process; a role's own limit replaces it
    # on the routes that need that role.
    rate_limit: RateLimit | None = None
    role_rate_limits: dict[AuthRole, RateLimit] = Field(default_factory=dict)


class Settings(BaseSettings):
    """The effective configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=_NESTED,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    home: Path = Path(".driftloop")
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    data: DataSettings = DataSettings()
    simulate: SimulateSettings = SimulateSettings()
    pipeline: PipelineSettings = PipelineSettings()
    training: TrainingSettings = TrainingSettings()
    tracking: TrackingSettings = TrackingSettings()
    registry: RegistrySettings = RegistrySettings()
    policy: PolicySettings = PolicySettings()
    serving: ServingSettings = ServingSettings()
    capture: CaptureSettings = CaptureSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
    auth: AuthSettings = AuthSettings()

    # Where the file came from (None: defaults and environment only). Not a configuration key.
    config_file: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must override it, so it comes first.
        return (env_settings, init_settings)

    @property
    def storage_root(self) -> str:
        """The object-store root URI: ``s3://…`` or an absolute local path."""
        return self.storage.root or str(self.home)

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI."""
        return self.tracking.uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def capture_wal_dir(self) -> Path:
        """The capture store's local write-ahead log directory."""
        return self.capture.wal_dir or self.home / "capture" / "wal"

    @property
    def artifact_root(self) -> str:
        """Where new MLflow experiments store artifacts."""
        return self.tracking.artifact_root or f"{self.storage_root.rstrip('/')}/mlflow"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the metadata database."""
        url = self.database.url.get_secret_value()
        return url or f"sqlite:///{self.home / 'driftloop.db'}"


def load_settings(config: Path | None = None, *, cwd: Path | None = None) -> Settings:
    """Build the effective configuration.

    ``config`` is an explicit file (it must exist); otherwise ``<cwd>/driftloop.toml`` is used when it
    exists. Raises :class:`ConfigError` for a missing/unparsable file, an unknown key or a bad value.
    """
    cwd = (cwd or Path.cwd()).resolve()
    path = _find_config(config, cwd)
    values: dict[str, Any] = _read_toml(path) if path else {}
    _reject_unknown_env_sections(os.environ)
    token = os.environ.get(TOKEN_ENV)
    if token and isinstance(values.get("auth", {}), dict):  # a non-table [auth] fails validation below
        values["auth"] = {**values.get("auth", {}), "token": token}
    try:
        settings = Settings(**values, config_file=path)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    base = path.parent if path else cwd
    return _resolve_paths(settings, base)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The configuration as plain data with secrets and URL passwords masked, for display."""
    data = settings.model_dump(mode="json")
    data["database"]["url"] = _mask_url(settings.database_url)
    data["storage"]["root"] = settings.storage_root
    return data


def _find_config(config: Path | None, cwd: Path) -> Path | None:
    if config is not None:
        path = config if config.is_absolute() else cwd / config
        if not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        return path.resolve()
    default = cwd / CONFIG_FILENAME
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _reject_unknown_env_sections(environ: Mapping[str, str]) -> None:
    # pydantic-settings silently ignores DRIFTLOOP_<NAME>__… when NAME is not a field; a typo there would
    # be invisible, so refuse it. Names without "__" (e.g. DRIFTLOOP_TEST_POSTGRES_URL) are not config.
    known = {name.upper() for name in Settings.model_fields if name != "config_file"}
    for key in environ:
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or _NESTED not in upper:
            continue
        section = upper[len(ENV_PREFIX) :].split(_NESTED, 1)[0]
        if section not in known:
            raise ConfigError(
                f"unknown configuration key in environment variable {key}: no section {section.lower()!r}"
            )


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc)
        env = ENV_PREFIX + _NESTED.join(loc).upper()
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].rstrip(".").lower()
        problems.append(f"{key} ({env}): {what}")
    where = f" in {path}" if path else ""
    return f"invalid configuration{where}: " + "; ".join(problems)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    home = settings.home if settings.home.is_absolute() else base / settings.home
    root = settings.storage.root
    if root and "://" not in root and not Path(root).is_absolute():
        root = str(base / root)
    if root.startswith("file://"):
        root = root[len("file://") :]
    storage = settings.storage.model_copy(update={"root": root})
    wal_dir = settings.capture.wal_dir
    if wal_dir is not None and not wal_dir.is_absolute():
        wal_dir = (base / wal_dir).resolve()
    capture = settings.capture.model_copy(update={"wal_dir": wal_dir})
    return settings.model_copy(update={"home": home.resolve(), "storage": storage, "capture": capture})


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
