"""Layers shared by the model families."""
from __future__ import annotations

import torch
import torch.nn as nn


class GlobalAvgPool(nn.Module):
    """Mean over H and W: B×C×H×W → B×C×1×1.

    A module (rather than an inline `x.mean`) so that tiled inference (utils/tiling.py) can find every
    global statistic of a network and hand each tile the whole image's value.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)
