"""How models are built: pipeline runners, training, MLflow tracking and the registered model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from driftloop.settings._section import Section
from driftloop.simulate import plant

__all__ = [
    "ContainerRunnerSettings",
    "HyperValue",
    "KubernetesRunnerSettings",
    "LocalRunnerSettings",
    "PipelineSettings",
    "RayRunnerSettings",
    "RegistrySettings",
    "RunnerSettings",
    "TrackingSettings",
    "TrainingSettings",
]


class LocalRunnerSettings(Section):
    """Each step in its own subprocess on this machine (the default; needs nothing else)."""

    type: Literal["local"] = "local"
    # Fork step processes from a server that has the heavy libraries imported (see LocalExecutor).
    prewarm: bool = True


class ContainerRunnerSettings(Section):
    """Each step in its own container: ``docker run IMAGE driftloop pipeline step NAME --run RUN``."""

    type: Literal["container"]
    image: str
    executable: str = "docker"  # or podman
    network: str = "host"
    # "missing" pulls an image the engine lacks; "never" fails fast on a host without a registry.
    pull: Literal["always", "missing", "never"] = "missing"
    # "caller": the runner's own uid:gid, so files a step writes in the mounted directories are the
    # caller's (the image's user is non-root and owns none of them); "image": the image's user; else a
    # ``--user`` value as the engine takes it.
    user: str = "caller"
    extra_args: tuple[str, ...] = ()


# A Kubernetes resource quantity: "500m", "2", "1.5", "512Mi", "2Gi".
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


class KubernetesRunnerSettings(Section):
    """Each step as a Kubernetes Job running the same step command, applied and followed with kubectl
    (docs/deployment-kubernetes.md, decision 0068)."""

    type: Literal["kubernetes"]
    image: str
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    namespace: str = "default"
    service_account: str | None = None
    env_secret: str | None = None  # a Secret whose keys become the step's environment (DRIFTLOOP_…, AWS_…)
    # A ConfigMap whose key ``driftloop.toml`` is mounted read-only and passed as ``--config``; empty: the
    # step runs on its image's defaults and the environment alone.
    config_map: str | None = "driftloop-config"
    kubectl: str = "kubectl"
    # The image's non-root user (a numeric id, so the kubelet can check it is not root).
    run_as_user: int = Field(default=10001, ge=1)
    cpu: str = Field(default="1", pattern=_QUANTITY)  # requests
    memory: str = Field(default="2Gi", pattern=_QUANTITY)
    # Limits. None for the CPU: no limit (a CFS quota throttles training without protecting anyone the
    # request does not); None for the memory: the request (a step that outgrows it is killed, not the node).
    cpu_limit: str | None = Field(default=None, pattern=_QUANTITY)
    memory_limit: str | None = Field(default=None, pattern=_QUANTITY)
    # A finished Job (and its pod and log) is kept this long for `kubectl logs`, then garbage-collected.
    ttl_after_finished_s: int = Field(default=86400, ge=0)
    poll_s: float = Field(default=2.0, gt=0)  # how often the Job's conditions are read
    # The Job's activeDeadlineSeconds is the step timeout; the runner gives the cluster this much longer
    # to report it before deleting the Job itself (an unreachable API server, a stuck controller).
    deadline_grace_s: float = Field(default=60.0, ge=0)


class RayRunnerSettings(Section):
    """Each step as a Ray task on the cluster at ``ray.address``, running the same step command."""

    type: Literal["ray"]
    num_cpus: float = Field(default=1.0, gt=0)  # CPUs a step's task reserves on its node


RunnerSettings = Annotated[
    LocalRunnerSettings | ContainerRunnerSettings | KubernetesRunnerSettings | RayRunnerSettings,
    Field(discriminator="type"),
]


class PipelineSettings(Section):
    """How pipeline steps are executed."""

    runner: RunnerSettings = LocalRunnerSettings()
    step_timeout_s: float = Field(default=3600.0, gt=0)


HyperValue = int | float | str | bool


class TrainingSettings(Section):
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
    # Data-parallel training on the Ray cluster at ``ray.address``: this many Ray Train workers (one CPU
    # each, gloo), gradients averaged over their shards of each batch. 0: in this process (docs/ray.md).
    ray_workers: int = Field(default=0, ge=0)


class TrackingSettings(Section):
    """MLflow tracking. Empty URI: an embedded SQLite store at ``<home>/mlflow.db``."""

    uri: str = ""
    # Training runs' experiment; empty: the registered model's name. Monitoring passes go to
    # ``<experiment>/monitoring`` (driftloop.tracking.runs, decision 0064).
    experiment: str = ""
    # Where new experiments keep artifacts; empty: ``<storage root>/mlflow`` (local or S3).
    artifact_root: str = ""
    # Basic-auth login for an MLflow server that requires one, sent once a password is set
    # (MLFLOW_TRACKING_USERNAME/PASSWORD); with auth on, `up` starts MLflow with this admin (docs/auth.md).
    username: str = "admin"
    password: SecretStr | None = None


class RegistrySettings(Section):
    """The MLflow registered model the loop trains, promotes and serves."""

    model_name: str = Field(default=plant.MODEL_NAME, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
