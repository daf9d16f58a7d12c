"""Contrastive regularisation over frozen ImageNet features (AECR-Net's, as MixDehazeNet and MixCLDehazeNet
train with it; KA-Net's perceptual contrastive loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.perceptual import build_feature_extractor

from .base import TrainingLoss


def gaussian_distance(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Mean of 1 − exp(−(a − b)² / 2σ²): a correntropy-induced distance, L2-like for small differences and
    saturating at 1 for large ones, so that outlying feature differences cannot dominate."""
    return (1 - torch.exp(-(a - b).square() / (2 * sigma ** 2))).mean()


DISTANCES = {"l1": lambda a, b, sigma: F.l1_loss(a, b), "l2": lambda a, b, sigma: F.mse_loss(a, b),
             "gaussian": gaussian_distance}


class ContrastiveRegularization(TrainingLoss):
    """Σ_i w_i · D(f_i(output), f_i(target)) / (D(f_i(output), f_i(hazy)) + 1e-7) over frozen ImageNet features:
    pull the output towards the clear image and push it away from the hazy one.

    MixDehazeNet's (and MixCLDehazeNet's) regulariser: `backbone` resnet152, distance l1, in one of two forms:
    - `as_released: true` computes what their `utils/CR_res.py` computes, the function their published numbers
      were trained with: the ResNet's BatchNorm layers normalise with batch statistics (the release never puts
      the loss in eval mode), separately for output, target and hazy batches; the [-1, 1] images go in
      unnormalised; the computation runs under the training step's autocast (fp16 there).
    - `as_released: false` (default), the principled form: frozen ImageNet BatchNorm statistics, the ImageNet
      input normalisation the weights were trained with, fp32. Measured on real crops the two losses differ by
      about 45% and their gradients are almost orthogonal.
    KA-Net's perceptual contrastive loss: vgg19 (relu1_1…relu5_1, weights 1/32…1) with the gaussian distance
    (σ = `sigma`). efficientnet-lite0 has real ImageNet weights offline (models/perceptual.py)."""

    DEFAULT_LAYER_WEIGHTS = {"resnet152": (1 / 16, 1 / 8, 1 / 4, 1.0), "efficientnet-lite0": (1 / 16, 1 / 8, 1 / 4, 1.0),
                             "vgg19": (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)}

    def __init__(self, backbone: str = "resnet152", layer_weights: list[float] | None = None,
                 weights_file: str | None = None, distance: str = "l1", sigma: float = 1.0, as_released: bool = False):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        self.features = build_feature_extractor(backbone, weights_file, as_released)
        self.as_released = self.follows_autocast = as_released
        self.layer_weights = tuple(layer_weights or self.DEFAULT_LAYER_WEIGHTS[backbone])
        if len(self.layer_weights) != len(self.features.stages):
            raise ValueError(f"{backbone} has {len(self.features.stages)} feature stages, "
                             f"got {len(self.layer_weights)} layer weights")
        self.distance, self.sigma = DISTANCES[distance], sigma

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        if self.as_released:  # three passes, in the release's order: batch statistics of each batch alone
            anchors = self.features(output)
            with torch.no_grad():
                positives, negatives = self.features(target), self.features(hazy)
        else:
            anchors = self.features(output)
            with torch.no_grad():  # frozen statistics: one batched pass gives the same features
                positives, negatives = zip(*(f.chunk(2) for f in self.features(torch.cat([target, hazy]))))
        loss = output.new_zeros((), dtype=torch.float32)
        for weight, anchor, positive, negative in zip(self.layer_weights, anchors, positives, negatives):
            ratio = self.distance(anchor, positive, self.sigma) / (self.distance(anchor, negative, self.sigma) + 1e-7)
            loss = loss + weight * ratio
        return loss
