"""In-memory stand-ins for the service's collaborators: a plant model without MLflow, a capture sink."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from driftloop.capture.records import expand
from driftloop.core.transform import fit
from driftloop.serving.inputs import InputSpec
from driftloop.serving.model import LoadedModel
from driftloop.settings import PLANT_COLUMNS
from driftloop.training.model import ScoringModel, mlp

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DERIVED = ("power_w", "temp_diff_k", "strain_min_nm")


def plant_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "product_variant": rng.choice(["L", "M", "H"], n),
            "air_temperature_k": rng.normal(300, 2, n).round(1),
            "process_temperature_k": rng.normal(310, 1, n).round(1),
            "rotational_speed_rpm": rng.normal(1540, 180, n).round(),
            "torque_nm": rng.normal(40, 10, n).clip(0).round(1),
            "tool_wear_min": rng.integers(0, 240, n).astype(float),
        }
    )
    return frame.to_dict("records")  # type: ignore[return-value]


def plant_model(version: int = 1, *, seed: int = 0, threshold: float | None = 0.5) -> LoadedModel:
    """A real (untrained) ScoringModel behind the plant's fitted transform."""
    transform = fit(pd.DataFrame(plant_rows(400, seed=99)), PLANT_COLUMNS, DERIVED, target="machine_failure")
    torch.manual_seed(seed)
    module = ScoringModel(mlp(len(transform.feature_names), hidden=(8,)), "classification").eval()
    return LoadedModel("plant", version, f"run-{version}", InputSpec.build(transform), module, threshold)


class BrokenModule(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("CUDA out of memory (simulated)")


class MemoryCapture:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def append_async(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))

    async def append_many_async(self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False) -> None:
        for record in records:  # as the store will write them: a request's batch as its predictions
            self.records.extend(expand(dict(record)))

    def append_nowait(self, records: Sequence[Mapping[str, Any]], *, trusted: bool = False) -> None:
        for record in records:
            self.records.extend(expand(dict(record)))

    def stats(self) -> Mapping[str, Any]:
        return {"pending_bytes": 0, "shipped_records": len(self.records), "failures": 0}
