"""Training losses behind one interface: `loss(output, target, hazy) -> scalar`, all images in [-1, 1].

The hazy input is part of the signature because contrastive losses (added by later work) pull the output
towards the target and away from the hazy image. Add a loss by registering its class in LOSSES.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class L1Loss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)


class MSELoss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)


LOSSES: dict[str, type[nn.Module]] = {"l1": L1Loss, "mse": MSELoss}


class WeightedLoss(nn.Module):
    """Σ weight·term. `forward` returns the total and each weighted term (for logging)."""

    def __init__(self, terms: list[tuple[str, float]]):
        super().__init__()
        self.weights = {name: weight for name, weight in terms}
        self.terms = nn.ModuleDict({name: LOSSES[name]() for name, _ in terms})

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {name: self.weights[name] * term(output, target, hazy) for name, term in self.terms.items()}
        return sum(parts.values()), parts


def build_loss(terms) -> WeightedLoss:
    """`terms`: the config's loss list (objects with `name` and `weight`)."""
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is listed twice: {names}")
    return WeightedLoss([(t.name, t.weight) for t in terms])
