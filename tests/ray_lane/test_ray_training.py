"""``training.ray_workers``: data-parallel training with Ray Train matches one-process training."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from driftloop.settings import TrainingSettings, load_settings
from driftloop.storage import open_store
from driftloop.training.loop import fit, predict
from driftloop.training.metrics import validation_score
from driftloop.training.model import build_model
from driftloop.training.ray_train import fit_on_ray

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.ray

# Same seed, same data: two replicas average the gradient of each batch's halves, which is the
# one-process gradient of the whole batch; what differs is float rounding and the dropout masks.
AUC_TOLERANCE = 0.01


def _data(rows: int = 6000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] * x[:, 3] - 2.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return x, y


def test_two_ray_workers_train_the_model_one_process_trains(ray_address: str, tmp_path: Path) -> None:
    cfg = TrainingSettings(max_epochs=6, patience=6, hidden=(16,), batch_size=128, ray_workers=2)
    x, y = _data()
    train, validation = (x[:4000], y[:4000]), (x[4000:5000], y[4000:5000])
    holdout_x, holdout_y = x[5000:], y[5000:]

    local = fit(build_model(cfg, x.shape[1]), train, validation, cfg)
    seen: list[int] = []
    store = open_store(str(tmp_path / "store"))
    distributed = fit_on_ray(
        build_model(cfg, x.shape[1]),
        train,
        validation,
        cfg,
        address=ray_address,
        storage=store.arrow_filesystem(),
        on_epoch=lambda record: seen.append(record.epoch),
    )

    assert seen == [r.epoch for r in distributed.history] == [r.epoch for r in local.history]
    for one, two in zip(local.history, distributed.history, strict=True):
        assert two.val_score == pytest.approx(one.val_score, abs=AUC_TOLERANCE)
        assert two.train_loss == pytest.approx(one.train_loss, rel=0.05)
    auc_local = validation_score("classification", holdout_y, predict(local.model, holdout_x))
    auc_ray = validation_score("classification", holdout_y, predict(distributed.model, holdout_x))
    assert auc_local > 0.7  # a model that learned something, so agreeing means something
    assert auc_ray == pytest.approx(auc_local, abs=AUC_TOLERANCE)
    # The same model: its state dict loads into a fresh one and scores the same (what .pth carries).
    buffer = io.BytesIO()
    torch.save(distributed.model.state_dict(), buffer)
    fresh = build_model(cfg, x.shape[1])
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    np.testing.assert_allclose(predict(fresh, holdout_x), predict(distributed.model, holdout_x))
    # The checkpoint Ray Train wrote to the store was removed once read.
    assert not [i for i in store.list("ray-train/") if not i.key.endswith("/")]


def test_a_pipeline_tracks_the_data_parallel_model_like_any_other(ray_address: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    config = tmp_path / "driftloop.toml"
    config.write_text(
        f'[ray]\naddress = "{ray_address}"\n[training]\nmax_epochs = 3\nhidden = [16]\nray_workers = 2\n'
    )
    simulation = ("--start", "2026-01-01", "--days", "2", "--rows-per-day", "1500")
    for args in (("simulate", *simulation), ("pipeline", "run", "--as-of", "2026-01-10")):
        done = subprocess.run(
            [sys.executable, "-m", "driftloop", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
    name = load_settings(config).registry.model_name
    assert f"model={name}/1" in done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / '.driftloop' / 'mlflow.db'}")
    run_id = client.get_model_version(name, "1").run_id
    assert run_id is not None
    run = client.get_run(run_id)
    assert run.data.params["ray_workers"] == "2"
    assert len(client.get_metric_history(run_id, "val_score")) == int(run.data.metrics["epochs"])
    assert {"model.pth", "transform.json", "reference_profile.json"} <= {
        a.path for a in client.list_artifacts(run_id)
    }
