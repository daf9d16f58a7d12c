"""What every loss term declares; WeightedLoss and the training step read it instead of probing attributes."""
from __future__ import annotations

import torch
import torch.nn as nn


class TrainingLoss(nn.Module):
    """`term(output, target, hazy)` → scalar, images in [-1, 1] (plus `global_feature=` when it needs one)."""

    needs_global_feature: bool = False  # receives the network's global feature z (KA-Net's sample reweighting)
    follows_autocast: bool = False      # runs under the step's autocast (else in fp32)

    def running_state(self) -> dict[str, torch.Tensor]:
        """What the term carries from one step to the next, for checkpoints (nothing by default)."""
        return {}

    def load_running_state(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no running state, got {sorted(state)}")
