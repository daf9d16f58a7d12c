"""Per-pixel losses on images in [-1, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LossTerm


class L1Loss(LossTerm):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)


class MSELoss(LossTerm):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)
