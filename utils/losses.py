"""Training losses behind one interface: `loss(output, target, hazy) -> scalar`, all images in [-1, 1].

The hazy input is part of the signature because contrastive losses (added by later work) pull the output
towards the target and away from the hazy image. Add a loss by registering its class in LOSSES.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.perceptual import build_feature_extractor


class L1Loss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)


class MSELoss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)


class ContrastiveRegularization(nn.Module):
    """Σ_i w_i · L1(f_i(output), f_i(target)) / (L1(f_i(output), f_i(hazy)) + 1e-7) over frozen ImageNet features
    (AECR-Net's regulariser as MixDehazeNet uses it): pull the output towards the clear image and push it
    away from the hazy one. `backbone`: resnet152 (the paper), vgg19 or efficientnet-lite0 (models/perceptual.py).
    Unlike the anchors, which feed [-1, 1] images to ResNet unnormalised, inputs get the normalisation the
    weights were trained with."""

    DEFAULT_LAYER_WEIGHTS = {"resnet152": (1 / 16, 1 / 8, 1 / 4, 1.0), "efficientnet-lite0": (1 / 16, 1 / 8, 1 / 4, 1.0),
                             "vgg19": (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)}

    def __init__(self, backbone: str = "resnet152", layer_weights: list[float] | None = None, weights_file: str | None = None):
        super().__init__()
        self.features = build_feature_extractor(backbone, weights_file)
        self.layer_weights = tuple(layer_weights or self.DEFAULT_LAYER_WEIGHTS[backbone])
        if len(self.layer_weights) != len(self.features.stages):
            raise ValueError(f"{backbone} has {len(self.features.stages)} feature stages, got {len(self.layer_weights)} layer weights")

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # positives and negatives are constants
            references = self.features(torch.cat([target, hazy]))
        loss = output.new_zeros(())
        for weight, out, reference in zip(self.layer_weights, self.features(output), references):
            positive, negative = reference.chunk(2)
            loss = loss + weight * F.l1_loss(out, positive) / (F.l1_loss(out, negative) + 1e-7)
        return loss


LOSSES: dict[str, type[nn.Module]] = {"l1": L1Loss, "mse": MSELoss, "contrastive": ContrastiveRegularization}


class WeightedLoss(nn.Module):
    """Σ weight·term. `forward` returns the total and each weighted term (for logging)."""

    def __init__(self, terms: list[tuple[str, float, dict]]):
        super().__init__()
        self.weights = {name: weight for name, weight, _ in terms}
        self.terms = nn.ModuleDict({name: LOSSES[name](**args) for name, _, args in terms})

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {name: self.weights[name] * term(output, target, hazy) for name, term in self.terms.items()}
        return sum(parts.values()), parts


def build_loss(terms) -> WeightedLoss:
    """`terms`: the config's loss list (objects with `name`, `weight` and `args`)."""
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is listed twice: {names}")
    return WeightedLoss([(t.name, t.weight, t.args) for t in terms])
