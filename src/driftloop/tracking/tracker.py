"""The MLflow tracking adapter. Only this package and ``registry`` import mlflow.

MLflow keeps process-wide state (the tracking URI, S3 credentials read from the environment);
:func:`configure_mlflow` sets it explicitly from driftloop's settings when a tracker is created, never at
import time.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from driftloop.core.logins import login_refused
from driftloop.core.models import TrackedRun
from driftloop.errors import NotFoundError, StorageError, StorageUnavailableError
from driftloop.tracking.runs import (
    RunOrigin,
    experiment_description,
    experiment_name,
    run_tags,
    training_experiment,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import numpy as np
    import pandas as pd
    import torch

    from driftloop.core.transform import Transform
    from driftloop.settings import Settings
    from driftloop.tracking.runs import RunKind

__all__ = ["Scorer", "Tracker", "configure_mlflow", "login_refused"]

MODEL_ARTIFACT = "model"


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow at the configured tracking server and S3 endpoint (explicit, idempotent).

    MLflow's S3 artifact client reads its endpoint and credentials from the environment; what
    ``storage.s3`` configures is set there (configuration wins, as everywhere in driftloop); what it
    leaves empty stays as the environment has it (e.g. an AWS profile or instance role).
    """
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    s3 = settings.storage.s3
    if s3.endpoint_url:
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = s3.endpoint_url
    if s3.access_key_id and s3.secret_access_key:
        os.environ["AWS_ACCESS_KEY_ID"] = s3.access_key_id
        os.environ["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key.get_secret_value()
    os.environ.setdefault("AWS_DEFAULT_REGION", s3.region)
    # A server with MLflow's basic auth (e.g. the one `driftloop up` starts with auth on): MLflow's REST
    # client sends these with every request.
    if settings.tracking.username and settings.tracking.password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.tracking.username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.tracking.password.get_secret_value()
    # Nothing in driftloop needs MLflow's background telemetry or its git probing of the caller.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow draws a progress bar on stderr for every artifact download; driftloop reports its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Tracker:
    """Runs in the experiments of their kinds (:mod:`driftloop.tracking.runs`), started by ``origin``.
    Every method translates MLflow failures to driftloop errors.

    ``experiment``: the training experiment's name instead of the configured one (monitoring runs go
    to ``<experiment>/monitoring``).
    """

    def __init__(
        self, settings: Settings, *, experiment: str | None = None, origin: RunOrigin | None = None
    ) -> None:
        configure_mlflow(settings)
        self._settings = settings
        self._client = MlflowClient(settings.tracking_uri)
        self._experiment = experiment or training_experiment(settings)
        self.origin = origin or RunOrigin()
        self._experiment_ids: dict[str, str] = {}

    @property
    def tracking_uri(self) -> str:
        return self._settings.tracking_uri

    def experiment_for(self, kind: RunKind) -> str:
        """The id of the experiment runs of ``kind`` go to (created on first use)."""
        name = experiment_name(self._experiment, kind)
        if name not in self._experiment_ids:
            description = experiment_description(self._settings.registry.model_name, kind)
            self._experiment_ids[name] = self._ensure_experiment(name, description)
        return self._experiment_ids[name]

    def start_run(
        self, name: str, *, kind: RunKind, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """Create a running run of ``kind`` in its experiment, tagged with its origin (source, user, kind,
        commit) and ``tags``, and return its id (``parent_run_id`` nests it, as MLflow's UI shows)."""
        all_tags = run_tags(self.origin, kind, tags)
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        with self._errors("start a run"):
            run = self._client.create_run(self.experiment_for(kind), run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def end_run(self, run_id: str, *, failed: bool = False) -> None:
        # MLflow writes "View run … at: URL" to stdout here; driftloop's own output says where the run is.
        with self._errors("end the run"), contextlib.redirect_stdout(io.StringIO()):
            self._client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_text(v)) for k, v in sorted(params.items())]
        with self._errors("log parameters"):
            for start in range(0, len(items), 100):  # MLflow's batch limit
                self._client.log_batch(run_id, params=items[start : start + 100], synchronous=True)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float | None], *, step: int | None = None
    ) -> None:
        """Log the numeric, finite values of ``metrics`` (None means "undefined" and is skipped)."""
        from mlflow.entities import Metric

        now = int(datetime.now(UTC).timestamp() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in sorted(metrics.items())
            if v is not None and float(v) == float(v)
        ]
        with self._errors("log metrics"):
            for start in range(0, len(items), 1000):
                self._client.log_batch(run_id, metrics=items[start : start + 1000], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._errors("set tags"):
            self._client.log_batch(
                run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True
            )

    def log_bytes(self, run_id: str, path: str, data: bytes) -> None:
        """Store ``data`` as the artifact ``path`` (e.g. ``plots/roc.png``) of the run."""
        directory, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp, self._errors(f"store artifact {path}"):
            local = Path(tmp) / name
            local.write_bytes(data)
            self._client.log_artifact(run_id, str(local), artifact_path=directory or None)

    def log_json(self, run_id: str, path: str, value: Any) -> None:
        self.log_bytes(run_id, path, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def read_bytes(self, run_id: str, path: str) -> bytes:
        """An artifact's bytes; :class:`NotFoundError` when the run has no such artifact."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self._client.download_artifacts(run_id, path, tmp)
            except (MlflowException, OSError) as exc:
                raise NotFoundError(f"run {run_id} has no artifact {path!r}") from exc
            return Path(local).read_bytes()

    def log_model(
        self, run_id: str, module: torch.nn.Module, transform: Transform, input_example: pd.DataFrame
    ) -> str:
        """Log ``module`` with ``transform`` as driftloop's MLflow model (:mod:`driftloop.tracking.pyfunc`):
        the PyTorch flavor, and a pyfunc whose signature is the transform's raw inputs. Returns its URI.

        ``input_example``: a few raw rows, typed as :meth:`Transform.typed_frame` types them.
        """
        import numpy as np
        from mlflow.models import Model, ModelSignature
        from mlflow.types import ColSpec, Schema, TensorSpec

        from driftloop.tracking import pyfunc

        # Booleans as "string" too: MLflow casts a null in a "boolean" column to False, not null.
        types = {"numeric": "double", "categorical": "string", "boolean": "string"}
        signature = ModelSignature(
            inputs=Schema([ColSpec(types[spec.kind], spec.name) for spec in transform.inputs]),
            outputs=Schema([TensorSpec(np.dtype(np.float64), (-1,))]),
        )
        with self._errors("log the model"), _quiet("mlflow.pytorch"):
            # The logged model belongs to the run's experiment (and its artifact root), not "Default".
            mlflow.set_experiment(experiment_id=self._client.get_run(run_id).info.experiment_id)
            info = Model.log(
                None,  # artifact_path: deprecated in favour of name, yet still a required argument
                name=MODEL_ARTIFACT,
                flavor=pyfunc,
                flavor_name="pytorch",
                run_id=run_id,  # explicit: no fluent active run, which would end ours on exit
                module=module,
                transform=transform,
                signature=signature,
                input_example=input_example,
                pip_requirements=_requirements(),
            )
        return str(info.model_uri)

    def log_dataset(
        self, run_id: str, frame: pd.DataFrame, *, name: str, source: str, target: str | None, context: str
    ) -> None:
        """Record the dataset a run used (MLflow's ``log_input``): name, source URI, digest, schema."""
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with self._errors("log the dataset"):
            dataset = from_pandas(frame, source=source, name=name, targets=target)
            tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
            entry = DatasetInput(dataset._to_mlflow_entity(), tags=tags)
            self._client.log_inputs(run_id, datasets=[entry])

    def load_torch_model(self, model_uri: str) -> torch.nn.Module:
        import mlflow.pytorch

        with self._errors(f"load model {model_uri}"):
            model: torch.nn.Module = mlflow.pytorch.load_model(model_uri)
        return model

    def load_scorer(self, model_uri: str) -> Scorer:
        """The MLflow pyfunc model at ``model_uri`` (as serving loads it) with its input names and example."""
        import mlflow.pyfunc
        import pandas as pd

        with self._errors(f"load model {model_uri}"):
            model = mlflow.pyfunc.load_model(model_uri)
        schema = model.metadata.get_input_schema()
        names = list(schema.input_names()) if schema is not None else []
        example = model.input_example
        return Scorer(model, names, example if isinstance(example, pd.DataFrame) else None)

    def artifact_size(self, run_id: str, path: str) -> int | None:
        """Size in bytes of a run's artifact file, None when absent."""
        directory = path.rpartition("/")[0]
        with self._errors(f"list artifacts of {run_id}"):
            listed = self._client.list_artifacts(run_id, directory or None)
        for info in listed:
            if info.path == path and not info.is_dir:
                return int(info.file_size or 0)
        return None

    def get_run(self, run_id: str) -> TrackedRun:
        try:
            run = self._client.get_run(run_id)
        except MlflowException as exc:
            raise NotFoundError(f"no tracked run {run_id!r} at {self.tracking_uri}") from exc
        info = run.info
        start = datetime.fromtimestamp(info.start_time / 1000, UTC) if info.start_time else None
        return TrackedRun(
            run_id=info.run_id,
            experiment_id=info.experiment_id,
            name=info.run_name or "",
            status=info.status,
            artifact_uri=info.artifact_uri,
            start_time=start,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
        )

    def child_runs(self, parent_run_id: str) -> list[TrackedRun]:
        """The runs nested under ``parent_run_id``, searched in the parent's own experiment: a grid run
        before decision 0064 (experiment ``driftloop``) is found as well as one made since."""
        parent = self.get_run(parent_run_id)
        with self._errors("search runs"):
            runs = self._client.search_runs(
                [parent.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
            )
        return [self.get_run(r.info.run_id) for r in runs]

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        with self._errors("read metric history"):
            return [(m.step, m.value) for m in self._client.get_metric_history(run_id, key)]

    def _ensure_experiment(self, name: str, description: str) -> str:
        with self._errors(f"open experiment {name!r}"):
            found = self._client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = self._artifact_location()
            # The note MLflow's UI shows as the experiment's description.
            tags = {"mlflow.note.content": description}
            try:
                return str(self._client.create_experiment(name, artifact_location=location, tags=tags))
            except MlflowException:
                # Another process created it between our lookup and create: use theirs.
                again = self._client.get_experiment_by_name(name)
                if again is None:
                    raise
                return str(again.experiment_id)

    def _artifact_location(self) -> str | None:
        explicit = self._settings.tracking.artifact_root
        if explicit:
            return explicit
        if self.tracking_uri.startswith(("http://", "https://")):
            return None  # the server decides (proxied artifacts or its --default-artifact-root)
        root = self._settings.artifact_root
        return root if "://" in root else Path(root).resolve().as_uri()

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            with warnings.catch_warnings():
                # Warnings raised inside MLflow (pandas deprecations in its digest and example code, two
                # equivalent local dataset sources) are about MLflow, not about anything a user can change.
                warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
                yield
        except MlflowException as exc:
            message = _first_line(str(exc))
            if "Connection" in message or "Max retries" in message or "Failed to establish" in message:
                raise StorageUnavailableError(
                    f"cannot {action}: MLflow at {self.tracking_uri} is unreachable"
                ) from exc
            raise StorageError(
                f"cannot {action}: {login_refused(message, self.tracking_uri) or message}"
            ) from exc
        except OSError as exc:
            raise StorageUnavailableError(f"cannot {action}: {exc}") from exc


class Scorer:
    """A loaded model that turns a feature frame into one score per row, whatever flavour it was."""

    def __init__(self, model: Any, input_names: list[str], input_example: pd.DataFrame | None) -> None:
        self._model = model
        self.input_names = input_names
        self.input_example = input_example

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            out = self._model.predict(frame)
        return np.asarray(out, dtype=np.float64).reshape(-1)


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence ``logger``'s warnings for a call: MLflow warns on every pickled PyTorch model, a format
    driftloop chose on purpose (decision 0011)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _param_text(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, list | tuple | dict) else str(value)
    return text[:6000]  # MLflow's parameter value limit


def _first_line(text: str) -> str:
    stripped = text.strip()
    return stripped.splitlines()[0][:300] if stripped else "unknown MLflow error"


def _requirements() -> list[str]:
    # Explicit, so MLflow does not spend seconds inferring them in a subprocess on every log_model.
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in ("numpy", "pandas", "cloudpickle")]
    return [f"torch=={version('torch').split('+', 1)[0]}", *pins]


def read_json(tracker: Tracker, run_id: str, path: str) -> Any:
    """A JSON artifact of a run."""
    return json.load(io.BytesIO(tracker.read_bytes(run_id, path)))
