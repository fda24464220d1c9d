"""The obvious FastAPI wrapper: rows → DataFrame → fitted transform → torch → scores.

Served by uvicorn from benchmarks/serving.py, in the benchmark's workspace (the current directory).
"""

from __future__ import annotations

import pandas as pd
import torch
from fastapi import FastAPI
from pydantic import BaseModel

from driftloop.core.transform import Transform
from driftloop.registry import Registry
from driftloop.settings import load_settings
from driftloop.tracking import Tracker

torch.set_num_threads(1)
settings = load_settings()
tracker = Tracker(settings)
mv = Registry(settings).by_alias(settings.registry.model_name, "production")
transform = Transform.from_json(tracker.read_bytes(mv.run_id, "transform.json"))
module = tracker.load_torch_model(mv.source).eval()


class Row(BaseModel):
    product_variant: str
    air_temperature_k: float
    process_temperature_k: float
    rotational_speed_rpm: float
    torque_nm: float
    tool_wear_min: float


class Body(BaseModel):
    instances: list[Row]


app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(body: Body) -> dict[str, list[float]]:
    features = transform.encode_frame(pd.DataFrame([row.model_dump() for row in body.instances]))
    with torch.inference_mode():
        return {"predictions": module(torch.from_numpy(features)).reshape(-1).tolist()}
