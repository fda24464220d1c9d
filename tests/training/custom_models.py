"""User model factories for the tests (what a data scientist would put in their own package)."""

from __future__ import annotations

from torch import nn


def linear(input_width: int, *, bias: bool = True) -> nn.Module:
    """No ``hidden``/``dropout`` in the signature: driftloop must not pass them."""
    return nn.Linear(input_width, 1, bias=bias)


def wide(input_width: int, **hyper: object) -> nn.Module:
    width = int(hyper.get("width", 8))  # type: ignore[call-overload]
    return nn.Sequential(nn.Linear(input_width, width), nn.Tanh(), nn.Linear(width, 1))


def two_outputs(input_width: int) -> nn.Module:
    return nn.Linear(input_width, 2)


def not_a_module(input_width: int) -> str:
    return f"{input_width} inputs"


NOT_CALLABLE = 3
