"""Full-reference metrics, following the evaluation protocol of DehazeFormer / MixDehazeNet exactly.

Both functions take B×3×H×W tensors in [0, 1] (clamp model outputs first: `utils.image.to_unit_range`)
and return one value per image (shape B). Average per image over a test set, batch size 1 at full size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _gaussian_ssim


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"expected two B×C×H×W tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10·log10(1 / MSE) over all RGB values of each full-resolution image."""
    _check_pair(pred, target)
    mse = (pred - target).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse)


def ssim_downsample_ratio(height: int, width: int) -> int:
    """The protocol scores SSIM after average pooling by round(min(H, W) / 256) (≥ 1)."""
    return max(1, round(min(height, width) / 256))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gaussian-window SSIM (11×11, σ 1.5, data range 1; pytorch_msssim's definition) on RGB, after the
    protocol's adaptive average pooling to (int(H/r), int(W/r)), r = round(min(H, W)/256)."""
    _check_pair(pred, target)
    h, w = pred.shape[-2:]
    r = ssim_downsample_ratio(h, w)
    if r > 1:
        size = (int(h / r), int(w / r))
        pred, target = F.adaptive_avg_pool2d(pred, size), F.adaptive_avg_pool2d(target, size)
    return _gaussian_ssim(pred, target, data_range=1.0, size_average=False)
