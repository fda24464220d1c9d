"""Model factories a careless data scientist might ship: the loop must never let them reach production."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def broken(input_width: int, **_: Any) -> nn.Module:
    """A factory that fails outright (a typo in the user's code)."""
    raise RuntimeError(f"my_model: cannot build a network for {input_width} inputs (bad config)")


class _Blind(nn.Module):
    """Ignores its input: one learnable constant, the base rate — it trains fine and knows nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 1)


def blind(input_width: int, **_: Any) -> nn.Module:
    """A factory whose model trains, registers and predicts — and is useless."""
    return _Blind()
