"""Training losses behind one interface: `loss(output, target, hazy) -> scalar`, all images in [-1, 1].

The hazy input is part of the signature because contrastive losses pull the output towards the target and
away from the hazy image. A loss whose class sets `needs_global_feature` also receives the network's global
feature z (`global_feature=`, B×C; only models that return one, e.g. KA-Net, can train with it). Add a loss
by registering its class in LOSSES.

train.py calls the losses inside the training step's autocast; every term runs in fp32 (autocast off) except
one whose instance sets `follows_autocast` (the released contrastive regulariser, which ran in the release's
fp16 autocast).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.perceptual import build_feature_extractor

from .reweighting import SampleReweighting


class L1Loss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)


class MSELoss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)


def gaussian_distance(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Mean of 1 − exp(−(a − b)² / 2σ²): a correntropy-induced distance, L2-like for small differences and
    saturating at 1 for large ones, so that outlying feature differences cannot dominate."""
    return (1 - torch.exp(-(a - b).square() / (2 * sigma ** 2))).mean()


DISTANCES = {"l1": lambda a, b, sigma: F.l1_loss(a, b), "l2": lambda a, b, sigma: F.mse_loss(a, b),
             "gaussian": gaussian_distance}


class ContrastiveRegularization(nn.Module):
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
            raise ValueError(f"{backbone} has {len(self.features.stages)} feature stages, got {len(self.layer_weights)} layer weights")
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
            loss = loss + weight * self.distance(anchor, positive, self.sigma) / (self.distance(anchor, negative, self.sigma) + 1e-7)
        return loss


class ReweightedL1Loss(nn.Module):
    """Σ_n w_n · L1_n: per-image L1 weighted by sample weights that decorrelate the network's global
    features within the batch and a memory bank (KA-Net's StableNet-style reweighting, utils/reweighting.py).
    Arguments go to SampleReweighting. With uniform weights this equals the plain l1 loss."""

    needs_global_feature = True

    def __init__(self, **reweighting_args):
        super().__init__()
        self.reweighting = SampleReweighting(**reweighting_args)

    def running_state(self) -> dict[str, torch.Tensor]:
        return self.reweighting.running_state()

    def load_running_state(self, state: dict[str, torch.Tensor]) -> None:
        self.reweighting.load_running_state(state)

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor,
                global_feature: torch.Tensor) -> torch.Tensor:
        per_image = (output - target).abs().flatten(1).mean(1)
        return (self.reweighting(global_feature) * per_image).sum()


LOSSES: dict[str, type[nn.Module]] = {"l1": L1Loss, "mse": MSELoss, "contrastive": ContrastiveRegularization,
                                      "reweighted_l1": ReweightedL1Loss}


class WeightedLoss(nn.Module):
    """Σ weight·term. `forward` returns the total and each weighted term (for logging)."""

    def __init__(self, terms: list[tuple[str, float, dict]]):
        super().__init__()
        self.weights = {name: weight for name, weight, _ in terms}
        self.terms = nn.ModuleDict({name: LOSSES[name](**args) for name, _, args in terms})
        self.needs_global_feature = any(getattr(term, "needs_global_feature", False) for term in self.terms.values())

    def running_state(self) -> dict[str, dict]:
        """What terms carry from one step to the next (the reweighting memory bank), for checkpoints. Frozen
        feature extractors are not part of it: they are rebuilt from their weights files."""
        return {name: term.running_state() for name, term in self.terms.items() if hasattr(term, "running_state")}

    def load_running_state(self, state: dict[str, dict]) -> None:
        for name, term_state in state.items():
            self.terms[name].load_running_state(term_state)

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor,
                global_feature: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {}
        for name, term in self.terms.items():
            extra = {"global_feature": global_feature} if getattr(term, "needs_global_feature", False) else {}
            fp32 = (contextlib.nullcontext() if getattr(term, "follows_autocast", False)
                    else torch.autocast(output.device.type, enabled=False))
            with fp32:
                parts[name] = self.weights[name] * term(output, target, hazy, **extra).float()
        return sum(parts.values()), parts


def build_loss(terms) -> WeightedLoss:
    """`terms`: the config's loss list (objects with `name`, `weight` and `args`)."""
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is listed twice: {names}")
    return WeightedLoss([(t.name, t.weight, t.args) for t in terms])
