"""Where a run goes and what MLflow's UI says of it besides its metrics (decision 0064).

Runs are made with ``MlflowClient.create_run``, which, unlike the fluent ``mlflow.start_run``, fills in
none of the tags MLflow's UI reads for its Source and User columns. So every run driftloop starts gets
them here: ``mlflow.source.name`` and ``mlflow.source.type`` (what started it), ``mlflow.user`` (who),
``mlflow.source.git.commit`` when the run records a commit, and ``driftloop.kind`` (what it is).

Each kind has an experiment: training runs (and a grid's parent, whose children must share its
experiment for MLflow to nest them) in the *training experiment* — ``tracking.experiment``, or when
that is empty the registered model's name — and monitoring passes in ``<training experiment>/monitoring``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from driftloop.runtime.users import os_user

if TYPE_CHECKING:
    from collections.abc import Mapping

    from driftloop.settings import Settings

__all__ = [
    "KIND_TAG",
    "RunKind",
    "RunOrigin",
    "experiment_description",
    "experiment_name",
    "run_tags",
    "training_experiment",
]

RunKind = Literal["training", "grid", "monitoring"]
KIND_TAG = "driftloop.kind"
GIT_COMMIT_TAG = "driftloop.git.commit"
# A kind's experiment, as a suffix of the training experiment's name.
_EXPERIMENTS: dict[str, str] = {"training": "", "grid": "", "monitoring": "/monitoring"}
_DESCRIPTIONS: dict[str, str] = {
    "": "Training runs of the registered model {model} (driftloop): pipeline, train, reproduce and "
    "experiment grids. Filter by tags.driftloop.kind.",
    "/monitoring": "Monitoring passes of the registered model {model} (driftloop monitor and the "
    "scheduler): one run per pass, with its drift metrics and reports.",
}


@dataclass(frozen=True)
class RunOrigin:
    """What starts runs and who: MLflow's Source and User columns.

    ``source`` names the command (``driftloop pipeline run 12``, ``driftloop train``); ``source_type``
    is MLflow's ``LOCAL`` (a person's command) or ``JOB`` (a pipeline step, a monitoring pass); ``user``
    is the identity to record, the operating-system user when None.
    """

    source: str = "driftloop"
    source_type: Literal["LOCAL", "JOB"] = "LOCAL"
    user: str | None = None


def training_experiment(settings: Settings) -> str:
    """The configured training experiment: ``tracking.experiment``, else the registered model's name."""
    return settings.tracking.experiment or settings.registry.model_name


def experiment_name(training: str, kind: RunKind) -> str:
    """The experiment runs of ``kind`` go to, given the ``training`` experiment's name."""
    return training + _EXPERIMENTS[kind]


def experiment_description(model: str, kind: RunKind) -> str:
    """The note MLflow's UI shows on a new experiment of ``kind``: which runs of ``model`` it holds."""
    return _DESCRIPTIONS[_EXPERIMENTS[kind]].format(model=model)


def run_tags(origin: RunOrigin, kind: RunKind, tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` with the source, user, kind and (from ``driftloop.git.commit``) the commit MLflow's UI
    shows; a key ``tags`` sets explicitly wins."""
    found: dict[str, str] = {
        "mlflow.source.name": origin.source,
        "mlflow.source.type": origin.source_type,
        "mlflow.user": origin.user or os_user(),
        KIND_TAG: kind,
    }
    commit = tags.get(GIT_COMMIT_TAG)
    if commit and commit != "unknown":
        found["mlflow.source.git.commit"] = commit
    return found | dict(tags)
