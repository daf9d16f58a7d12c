"""Per-pixel losses on images in [-1, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import TrainingLoss


class L1Loss(TrainingLoss):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)


class MSELoss(TrainingLoss):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)
