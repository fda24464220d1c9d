"""In-memory stand-ins for the service's collaborators (a plant model without MLflow, a capture sink),
request bodies in MLflow's formats, and the service run by uvicorn in a thread."""

from __future__ import annotations

import contextlib
import io
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import torch
import uvicorn

from driftloop.capture.parquet import expand
from driftloop.core.transform import fit
from driftloop.serving.inputs import InputSpec
from driftloop.serving.model import LoadedModel
from driftloop.settings import PLANT_COLUMNS
from driftloop.training.model import ScoringModel, mlp
from tests.conftest import free_port, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from fastapi import FastAPI

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


JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"


def mlflow_bodies(rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, bytes]]:
    """``rows`` in each way an MLflow client may send them to ``POST /invocations``: a label → the
    content type (None: no header) and the body."""
    columns = list(rows[0])
    split = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    by_column = {c: [r[c] for r in rows] for c in columns}
    parquet = io.BytesIO()
    pd.DataFrame(rows).to_parquet(parquet)
    return {
        "dataframe_split": (JSON, orjson.dumps({"dataframe_split": split})),
        "dataframe_split with index": (
            JSON,
            orjson.dumps({"dataframe_split": {"index": [f"r{i}" for i in range(len(rows))], **split}}),
        ),
        "dataframe_records": (JSON, orjson.dumps({"dataframe_records": rows})),
        "instances as rows": (JSON, orjson.dumps({"instances": rows})),
        "instances as columns": (JSON, orjson.dumps({"instances": by_column})),
        "inputs as rows": (JSON, orjson.dumps({"inputs": rows})),
        "inputs as columns": (JSON, orjson.dumps({"inputs": by_column})),
        "with params": (JSON, orjson.dumps({"inputs": by_column, "params": {"temperature": 0.2}})),
        "with empty params": (JSON, orjson.dumps({"params": {}, "dataframe_records": rows})),
        "charset": ("application/json; charset=UTF-8", orjson.dumps({"dataframe_records": rows})),
        "no content type": (None, orjson.dumps({"dataframe_split": split})),
        "csv": (CSV, pd.DataFrame(rows).to_csv(index=False).encode()),
        "csv with charset": ("text/csv; charset=utf-8", pd.DataFrame(rows).to_csv(index=False).encode()),
        "parquet": (PARQUET, parquet.getvalue()),
    }


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


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """``app`` served on a free loopback port, as ``driftloop serve`` runs it (uvicorn on uvloop), from a
    thread; yields the port once uvicorn listens."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
        assert server.started, "uvicorn stopped while starting"
        yield port
    finally:
        server.should_exit = True
        thread.join(20)
