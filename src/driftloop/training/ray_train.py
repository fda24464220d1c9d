"""Data-parallel training on a Ray cluster: ``training.ray_workers = N`` (the ``driftloop[ray]`` extra).

Ray Train's ``TorchTrainer`` starts N workers (one CPU each, the gloo backend) and every worker runs the
one training loop, :func:`driftloop.training.loop.fit`, as a :class:`~driftloop.training.loop.Replica`:
the same seeded batch order, its share of each batch, gradients averaged by DistributedDataParallel,
early stopping on the whole validation part (the same weights on every worker, so the same decision).
Worker 0 reports the best weights and the epoch history as a Ray Train checkpoint under
``storage`` (the object store, so every node reaches it), and :func:`fit_on_ray` returns them as the
in-process :func:`fit` would: the caller tracks and logs the model exactly as before.
"""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from driftloop.errors import DataError, DriftloopError
from driftloop.runtime.ray_cluster import connected
from driftloop.training.loop import EpochRecord, FitResult, Replica, fit

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pyarrow.fs

    from driftloop.settings import TrainingSettings
    from driftloop.training.model import ScoringModel

__all__ = ["fit_on_ray"]

_RESULT = "fit.pt"
_FEATURE = "training.ray_workers"


def fit_on_ray(
    model: ScoringModel,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    cfg: TrainingSettings,
    *,
    address: str,
    storage: tuple[pyarrow.fs.FileSystem, str],
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """:func:`~driftloop.training.loop.fit` on ``cfg.ray_workers`` Ray Train workers of the cluster at
    ``address``; ``storage`` (a filesystem and a base path every node reaches) holds the run's checkpoint
    while it is fetched. ``on_epoch`` sees each epoch once training ends (workers report to Ray Train,
    not to this process). Raises what :func:`fit` raises, and :class:`ConfigError` without a cluster."""
    with connected(address, _FEATURE) as ray:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        filesystem, base = storage
        data = ray.put((train, validation))
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"model": model, "data": data, "cfg": cfg},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(
                num_workers=cfg.ray_workers, use_gpu=False, resources_per_worker={"CPU": 1}
            ),
            run_config=RunConfig(
                name=f"driftloop-{uuid.uuid4().hex[:12]}",
                storage_path=f"{base.rstrip('/')}/ray-train",
                storage_filesystem=filesystem,
            ),
        )
        try:
            result = trainer.fit()
        except DriftloopError:
            raise
        except Exception as exc:
            raise _training_error(exc) from None
        if result.checkpoint is None:
            raise DataError(f"Ray training ended without a result: {result.error}")
        with result.checkpoint.as_directory() as directory:
            saved = torch.load(Path(directory) / _RESULT, weights_only=False)
        filesystem.delete_dir_contents(result.path, missing_dir_ok=True)
    model.load_state_dict(saved["state"])
    model.eval()
    history = [EpochRecord(**record) for record in saved["history"]]
    if on_epoch is not None:
        for record in history:
            on_epoch(record)
    return FitResult(
        model=model,
        history=history,
        best_epoch=saved["best_epoch"],
        stopped_early=saved["stopped_early"],
        seconds=saved["seconds"],
        pos_weight=saved["pos_weight"],
    )


def _training_error(exc: Exception) -> DriftloopError:
    """A worker's :class:`DriftloopError` (diverged loss, one class only) as itself; anything else as a
    :class:`DataError` with Ray's one-line reason."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, DriftloopError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return DataError(f"Ray training failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its replica of :func:`fit`; worker 0 reports the result as a checkpoint."""
    import ray
    import ray.train
    import torch.distributed as dist
    from ray.train import Checkpoint
    from torch.nn.parallel import DistributedDataParallel

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    cfg: TrainingSettings = config["cfg"]
    train, validation = ray.get(config["data"])
    model: ScoringModel = config["model"]
    torch.manual_seed(cfg.seed + rank)  # dropout masks: each replica its own, reproducibly

    def total(value: float) -> float:
        summed = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(summed)
        return float(summed.item())

    replica = Replica(rank=rank, world=world, wrap=DistributedDataParallel, total=total)
    result = fit(model, train, validation, cfg, replica=replica)
    metrics = {"best_epoch": result.best_epoch, "epochs": len(result.history)}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {
                "state": result.model.state_dict(),
                "history": [dataclasses.asdict(r) for r in result.history],
                "best_epoch": result.best_epoch,
                "stopped_early": result.stopped_early,
                "seconds": result.seconds,
                "pos_weight": result.pos_weight,
            },
            Path(directory) / _RESULT,
        )
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))
