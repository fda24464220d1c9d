"""What a service would have captured for a simulated day: its raw rows as prediction records, written
through the real capture store (shared by the monitoring CLI and dashboard tests)."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from driftloop.capture import CaptureStore
from driftloop.settings import load_settings
from driftloop.storage import store_for
from tests.conftest import SETTLE_S

if TYPE_CHECKING:
    from pathlib import Path

    from driftloop.storage import ObjectStore


def capture_day(
    directory: Path, model: str, day: str, *, torque_shift: float, wal: str = "wal", compact: bool = True
) -> None:
    """Capture ``day``'s raw rows of the workspace in ``directory`` as ``model`` v1's predictions, torque
    shifted by ``torque_shift`` (``compact``: into Parquet; else shipped and left landed)."""
    settings = load_settings(directory / "driftloop.toml")
    store = store_for(settings)
    keys = [i.key for i in store.list(f"raw/plant/date={day}/") if i.key.endswith(".csv")]
    frame = pd.concat(pd.read_csv(store.uri(k)) for k in keys)
    # Compacted by flush: the monitor reads Parquet and never compacts itself (decision 0050).
    cfg = settings.capture.model_copy(update={"convert_in_subprocess": False, "compact_idle_s": 0})
    capture = CaptureStore(store, directory / wal, cfg)
    capture.start()
    try:
        for i, row in enumerate(frame.to_dict("records")):
            inputs: dict[str, Any] = {k: plain(v) for k, v in row.items() if k != "timestamp"}
            inputs["torque_nm"] = inputs["torque_nm"] + torque_shift
            capture.append(
                {
                    "kind": "prediction",
                    "ts": row["timestamp"],
                    "prediction_id": f"{day}-{i}",
                    "model_name": model,
                    "model_version": 1,
                    "inputs": inputs,
                    "outputs": {"score": 0.02},
                    "score": 0.01 + 0.05 * ((i * 7919) % 100) / 100,
                    "latency_ms": 1.0,
                    "fallback": False,
                    "endpoint": "/v1/predict",
                }
            )
        assert capture.flush(SETTLE_S, compact=compact)
    finally:
        capture.close(compact=compact)


def plain(value: Any) -> Any:
    """A pandas cell as JSON would carry it: NaN as null, numpy scalars as Python numbers."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def predictions_by_writer(store: ObjectStore, model: str) -> dict[str, set[str]]:
    """The ids of ``model``'s predictions compacted to Parquet in ``store``, by the writer (one per capture
    WAL: a service process, or a replica) that captured them, read from each object's name
    (``captures/model=…/date=…/<writer>-seg-….parquet``)."""
    by_writer: dict[str, set[str]] = {}
    for info in store.list(f"captures/model={model}/"):
        if info.key.endswith(".parquet"):
            writer = info.key.rsplit("/", 1)[1].split("-seg-")[0]
            table = pq.read_table(io.BytesIO(store.read_bytes(info.key)), columns=["prediction_id"])
            by_writer.setdefault(writer, set()).update(table.column("prediction_id").to_pylist())
    return by_writer
