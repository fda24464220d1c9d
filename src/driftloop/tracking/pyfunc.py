"""driftloop's MLflow model: MLflow's PyTorch flavor plus a pyfunc that scores *raw rows*.

A logged model directory holds MLflow's PyTorch flavor (the pickled ``ScoringModel``, which
``mlflow.pytorch.load_model`` loads as it is), the fitted transform as ``transform.json``, and an
``MLmodel`` whose ``python_function`` flavor names this module as its loader. So every MLflow way of
scoring the model — ``mlflow.pyfunc.load_model``, ``mlflow models serve``, a Spark UDF — takes the raw
input columns (the signature lists them) and runs :meth:`Transform.encode <driftloop.core.transform.
Transform.encode>`, the code the prediction service runs: train/serve parity by construction
(``docs/decisions/0032-transform-artifact.md``).

This module is MLflow's "custom flavor" contract: :func:`save_model` (called by
``mlflow.models.Model.log``) and :func:`_load_pyfunc` (called by ``mlflow.pyfunc.load_model``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.core.transform import Transform

if TYPE_CHECKING:
    import torch

__all__ = ["TRANSFORM_FILE", "RawRowsModel", "save_model"]

TRANSFORM_FILE = "transform.json"


def save_model(
    path: str,
    mlflow_model: Any,
    *,
    module: torch.nn.Module,
    transform: Transform,
    signature: Any,
    input_example: pd.DataFrame,
    pip_requirements: list[str],
    **_: Any,
) -> None:
    """Save ``module`` with MLflow's PyTorch flavor (pickled: decision 0011), add ``transform.json``, and
    point the pyfunc flavor at :func:`_load_pyfunc`."""
    import mlflow.pytorch
    from mlflow.models.model import MLMODEL_FILE_NAME

    mlflow.pytorch.save_model(
        module,
        path,
        mlflow_model=mlflow_model,
        serialization_format="pickle",
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
    )
    Path(path, TRANSFORM_FILE).write_text(transform.to_json())
    mlflow_model.flavors["python_function"]["loader_module"] = __name__
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))


def _load_pyfunc(data_path: str, model_config: Any = None) -> RawRowsModel:
    """MLflow's pyfunc loader hook: ``data_path`` is the PyTorch flavor's ``data`` directory."""
    return RawRowsModel.load(Path(data_path).parent)


class RawRowsModel:
    """Raw rows (a DataFrame of the transform's input columns) → one score per row."""

    def __init__(self, module: torch.nn.Module, transform: Transform) -> None:
        self.module = module
        self.transform = transform

    @classmethod
    def load(cls, model_dir: Path) -> RawRowsModel:
        import mlflow.pytorch

        module = mlflow.pytorch.load_model(str(model_dir))
        module.eval()
        return cls(module, Transform.from_json((model_dir / TRANSFORM_FILE).read_text()))

    def get_raw_model(self) -> torch.nn.Module:
        return self.module

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        import torch
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from driftloop.errors import DataError

        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        try:
            features = self.transform.encode_frame(frame)
        except DataError as exc:  # bad input is the caller's error: MLflow's server answers it with 400
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        with torch.inference_mode():
            out = self.module(torch.from_numpy(features))
        scores: np.ndarray = out.numpy().astype(np.float64).reshape(-1)
        return scores
