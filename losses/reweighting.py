"""Sample reweighting (StableNet, Zhang et al., CVPR 2021), as KA-Net trains with it.

Per batch, learn weights w (softmax of free logits, summing to 1) under which the dimensions of the
network's global feature z become statistically independent: the squared weighted cross-covariances
between random Fourier features of different dimensions (an HSIC estimate) are driven down. Images whose
features carry a spurious correlation (e.g. haze density tied to scene type) get less weight, the rarer
ones more; the reconstruction loss is then Σ_n w_n ℓ_n.

A memory bank keeps a running average of earlier batches' features and weights, so that the decorrelation
reaches beyond one small batch. Everything here is detached from the network: the weights are constants
to its optimiser.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .base import TrainingLoss


def random_fourier_features(z: torch.Tensor, num_features: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """N×D → N×D×K: each dimension, standardised over the N rows, through K random Fourier features
    sqrt(2/K)·cos(ω ẑ + φ), ω ~ N(0, 1), φ ~ U(0, 2π) (a Gaussian-kernel feature map, redrawn per call)."""
    z = (z - z.mean(0)) / (z.std(0) + 1e-6)
    omega = torch.randn(num_features, generator=generator, device=z.device)
    phase = 2 * math.pi * torch.rand(z.shape[1], num_features, generator=generator, device=z.device)
    return math.sqrt(2.0 / num_features) * torch.cos(z[:, :, None] * omega + phase)


def weighted_cross_covariance(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_w(u_i, u_j) for all dimension pairs: features N×D×K, weights N (summing to 1) → D·K × D·K."""
    u = features.flatten(1)
    mean = weights @ u
    return (u * weights[:, None]).T @ u - torch.outer(mean, mean)


def decorrelation_loss(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of different dimensions of their squared weighted cross-covariances (within-dimension
    blocks excluded: a feature may depend on itself). A mean rather than StableNet's sum keeps the scale,
    and so the learning rate, independent of the feature width."""
    d, k = features.shape[1:]
    covariance = weighted_cross_covariance(features, weights).reshape(d, k, d, k)
    squared = covariance.square().sum((1, 3))
    return (squared.sum() - squared.diagonal().sum()) / (d * (d - 1))


class SampleReweighting(nn.Module):
    """`weights = reweighting(z)`: z N×D global features → N sample weights (≥ 0, summing to 1).

    The learning objective is StableNet's: decorrelation(w over batch + bank) / `balance` + Σ w², the
    second term keeping the weights from collapsing onto a few samples; `steps` SGD steps (momentum 0.9)
    of rate `lr` on the logits, starting from uniform weights each batch. `num_features` random Fourier
    features per dimension (StableNet uses 1; 5 halves the noise of the estimate). The defaults were chosen
    on a planted spurious correlation (tests/test_kanet.py); StableNet's balance of 70 belongs to its
    summed (width-dependent) decorrelation and does not carry over to the mean used here.
    """

    def __init__(self, bank_size: int = 32, num_features: int = 5, steps: int = 20, lr: float = 1.0,
                 balance: float = 0.03, bank_momentum: float = 0.9):
        super().__init__()
        self.num_features, self.steps, self.lr, self.balance = num_features, steps, lr, balance
        self.bank_size, self.bank_momentum = bank_size, bank_momentum
        self.register_buffer("bank_features", torch.empty(0), persistent=False)
        self.register_buffer("bank_logits", torch.empty(0), persistent=False)

    @torch.enable_grad()
    def learn_logits(self, z: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(z), device=z.device, requires_grad=True)
        optimizer = torch.optim.SGD([logits], lr=self.lr, momentum=0.9)
        all_z = torch.cat([z, self.bank_features]) if self.bank_features.numel() else z
        for _ in range(self.steps):
            features = random_fourier_features(all_z, self.num_features)
            weights = torch.softmax(torch.cat([logits, self.bank_logits]), 0)
            objective = decorrelation_loss(features, weights) / self.balance + torch.softmax(logits, 0).square().sum()
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
        return logits.detach()

    def running_state(self) -> dict[str, torch.Tensor]:
        """The memory bank, for checkpoints: a resumed run must see the bank the interrupted one had."""
        return {"bank_features": self.bank_features.cpu(), "bank_logits": self.bank_logits.cpu()}

    def load_running_state(self, state: dict[str, torch.Tensor]) -> None:
        device = self.bank_features.device
        self.bank_features, self.bank_logits = state["bank_features"].to(device), state["bank_logits"].to(device)

    def update_bank(self, z: torch.Tensor, logits: torch.Tensor) -> None:
        if self.bank_features.numel() == 0:  # the first batch starts the bank
            self.bank_features, self.bank_logits = z[: self.bank_size].clone(), logits[: self.bank_size].clone()
            return
        n = min(len(z), len(self.bank_features))
        m = self.bank_momentum
        self.bank_features[:n] = m * self.bank_features[:n] + (1 - m) * z[:n]
        self.bank_logits[:n] = m * self.bank_logits[:n] + (1 - m) * logits[:n]

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.detach().float().flatten(1)
        if len(z) + len(self.bank_features) < 2:  # nothing to decorrelate against
            return torch.ones(len(z), device=z.device)
        logits = self.learn_logits(z)
        if self.training:
            self.update_bank(z, logits)
        return torch.softmax(logits, 0)


class ReweightedL1Loss(TrainingLoss):
    """Σ_n w_n · L1_n: per-image L1 weighted by sample weights that decorrelate the network's global
    features within the batch and a memory bank (KA-Net's StableNet-style reweighting, SampleReweighting above).
    The arguments are SampleReweighting's. With uniform weights this equals the plain l1 loss."""

    needs_global_feature = True

    def __init__(self, bank_size: int = 32, num_features: int = 5, steps: int = 20, lr: float = 1.0,
                 balance: float = 0.03, bank_momentum: float = 0.9):
        super().__init__()
        self.reweighting = SampleReweighting(bank_size, num_features, steps, lr, balance, bank_momentum)

    def running_state(self) -> dict[str, torch.Tensor]:
        return self.reweighting.running_state()

    def load_running_state(self, state: dict[str, torch.Tensor]) -> None:
        self.reweighting.load_running_state(state)

    def forward(self, output: torch.Tensor, target: torch.Tensor, hazy: torch.Tensor,
                global_feature: torch.Tensor) -> torch.Tensor:
        per_image = (output - target).abs().flatten(1).mean(1)
        return (self.reweighting(global_feature) * per_image).sum()
