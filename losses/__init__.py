"""Training losses behind one interface: `loss(output, target, hazy) -> scalar`, all images in [-1, 1].

The hazy input is part of the signature because contrastive losses pull the output towards the target and
away from the hazy image. Every loss is a `TrainingLoss` (losses/base.py); one that sets `needs_global_feature` also
receives the network's global feature z (`global_feature=`, B×C; only models that return one, e.g. KA-Net, can
train with it). Add a loss by registering its class in LOSSES.

train.py calls the losses inside the training step's autocast; every term runs in fp32 (autocast off) except
one whose instance sets `follows_autocast` (the released contrastive regulariser, which ran in the release's
fp16 autocast).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from utils.config import check_loss_names

from .base import TrainingLoss
from .contrastive import ContrastiveRegularization, gaussian_distance
from .pixel import L1Loss, MSELoss
from .reweighting import ReweightedL1Loss, SampleReweighting

LOSSES: dict[str, type[TrainingLoss]] = {"l1": L1Loss, "mse": MSELoss, "contrastive": ContrastiveRegularization,
                                      "reweighted_l1": ReweightedL1Loss}


class WeightedLoss(nn.Module):
    """Σ weight·term. `forward` returns the total and each weighted term (for logging)."""

    def __init__(self, terms: list[tuple[str, float, dict]]):
        super().__init__()
        self.weights = {name: weight for name, weight, _ in terms}
        self.terms = nn.ModuleDict({name: LOSSES[name](**args) for name, _, args in terms})
        self.needs_global_feature = any(term.needs_global_feature for term in self.terms.values())

    def running_state(self) -> dict[str, dict]:
        """What terms carry from one step to the next (the reweighting memory bank), for checkpoints. Frozen
        feature extractors are not part of it: they are rebuilt from their weights files."""
        return {name: state for name, term in self.terms.items() if (state := term.running_state())}

    def load_running_state(self, state: dict[str, dict]) -> None:
        for name, term_state in state.items():
            self.terms[name].load_running_state(term_state)

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor,
                global_feature: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {}
        for name, term in self.terms.items():
            extra = {"global_feature": global_feature} if term.needs_global_feature else {}
            fp32 = (contextlib.nullcontext() if term.follows_autocast
                    else torch.autocast(output.device.type, enabled=False))
            with fp32:
                parts[name] = self.weights[name] * term(output, target, hazy, **extra).float()
        return sum(parts.values()), parts


def build_loss(terms) -> WeightedLoss:
    """`terms`: the config's loss list (objects with `name`, `weight` and `args`)."""
    check_loss_names([t.name for t in terms])
    return WeightedLoss([(t.name, t.weight, t.args) for t in terms])


__all__ = ["LOSSES", "ContrastiveRegularization", "L1Loss", "TrainingLoss", "MSELoss", "ReweightedL1Loss", "SampleReweighting",
           "WeightedLoss", "build_loss", "gaussian_distance"]
