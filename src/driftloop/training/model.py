"""The model factory (seed 1): the default tabular MLP or a user's ``package.module:function``.

A factory gets the input width and hyperparameters and returns an ``nn.Module`` mapping
``(rows, input_width)`` float32 to one output per row. driftloop wraps it in :class:`ScoringModel`, which
adds the task's output activation, so the logged MLflow model returns failure probabilities (or
regression values) directly.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from driftloop.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from driftloop.settings import TrainingSettings

__all__ = ["ScoringModel", "build_model", "check_factory", "load_factory", "mlp"]

Factory = Callable[..., nn.Module]


def mlp(
    input_width: int, *, hidden: Sequence[int] = (64, 32), dropout: float = 0.1, output_width: int = 1
) -> nn.Module:
    """The default model: ``Linear → ReLU → Dropout`` per hidden layer, then a linear output."""
    layers: list[nn.Module] = []
    width = input_width
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(dropout)]
        width = int(size)
    layers.append(nn.Linear(width, output_width))
    return nn.Sequential(*layers)


class ScoringModel(nn.Module):
    """A factory's module plus the task's output: probability (classification) or value (regression).

    ``forward`` returns a 1-D tensor, one score per row (what MLflow's pyfunc and the service serve);
    :meth:`logits` returns the raw outputs the loss is computed on. For regression the backbone learns
    the standardised target and ``forward`` maps it back with the training target's mean and scale
    (buffers, so they travel with the state dict).

    Classification probabilities are ``sigmoid(slope · logit + intercept)``: Platt scaling fitted on
    validation data (identity until :func:`~driftloop.training.loop.fit` calibrates it).
    """

    target_mean: torch.Tensor
    target_scale: torch.Tensor
    calibration_slope: torch.Tensor
    calibration_intercept: torch.Tensor

    def __init__(self, backbone: nn.Module, task: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.task = task
        self.register_buffer("target_mean", torch.tensor(0.0))
        self.register_buffer("target_scale", torch.tensor(1.0))
        self.register_buffer("calibration_slope", torch.tensor(1.0))
        self.register_buffer("calibration_intercept", torch.tensor(0.0))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(x)
        return cast("torch.Tensor", out.reshape(out.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        if self.task == "classification":
            return torch.sigmoid(out * self.calibration_slope + self.calibration_intercept)
        return out * self.target_scale + self.target_mean


def load_factory(path: str) -> Factory:
    """Import ``package.module:function``; a :class:`ConfigError` naming the key when it cannot."""
    module_name, _, attr = path.partition(":")
    key = "training.model_factory"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import module {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise ConfigError(f"{key}: module {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise ConfigError(f"{key}: {path} is not a function")
    return cast("Factory", factory)


def check_factory(cfg: TrainingSettings) -> None:
    """Refuse a factory that cannot be imported or does not take the configured parameters, before any
    data is read (:class:`ConfigError` naming the key). Its output is checked by :func:`build_model`."""
    _factory_kwargs(load_factory(cfg.model_factory), cfg)


def build_model(cfg: TrainingSettings, input_width: int) -> ScoringModel:
    """The configured factory's module for ``input_width`` inputs, seeded, checked and wrapped.

    The factory receives ``hidden`` and ``dropout`` when its signature accepts them, and every entry of
    ``training.params``; a parameter it does not accept is a :class:`ConfigError`.
    """
    factory = load_factory(cfg.model_factory)
    kwargs = _factory_kwargs(factory, cfg)
    torch.manual_seed(cfg.seed)
    try:
        module = factory(input_width, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"training.model_factory: {cfg.model_factory}({input_width}, …) failed: {exc}"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"training.model_factory: {cfg.model_factory} returned {type(module).__name__},"
            " not a torch.nn.Module"
        )
    model = ScoringModel(module, cfg.task)
    _check_output(model, input_width, cfg.model_factory)
    return model


def _factory_kwargs(factory: Factory, cfg: TrainingSettings) -> dict[str, Any]:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass only what was configured
        return dict(cfg.params)
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs: dict[str, Any] = {}
    for name, value in (("hidden", tuple(cfg.hidden)), ("dropout", cfg.dropout)):
        if open_ended or name in parameters:
            kwargs[name] = value
    unknown = [k for k in cfg.params if not open_ended and k not in parameters]
    if unknown:
        raise ConfigError(
            f"training.params: {cfg.model_factory} does not accept {', '.join(sorted(unknown))}"
            f" (it takes: {', '.join(p for p in parameters if p != next(iter(parameters)))})"
        )
    return kwargs | dict(cfg.params)


def _check_output(model: ScoringModel, input_width: int, name: str) -> None:
    probe = torch.zeros(3, input_width)
    model.eval()
    try:
        with torch.no_grad():
            raw = model.backbone(probe)
    except Exception as exc:
        raise ConfigError(
            f"training.model_factory: {name} fails on a ({3}, {input_width}) input: {exc}"
        ) from None
    if not isinstance(raw, torch.Tensor) or raw.numel() != 3:
        shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise ConfigError(
            f"training.model_factory: {name} must return one output per row, got shape {shape} for 3 rows"
        )
