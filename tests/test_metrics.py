"""The protocol's metrics against independent computations on real RESIDE pairs."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as pytorch_msssim_ssim
from skimage.metrics import structural_similarity

from metrics import psnr, ssim, ssim_downsample_ratio
from utils.image import read_image


def _pairs(folder):
    names = sorted(p.name for p in (folder / "GT").iterdir())
    assert len(names) == 10
    for name in names:
        gt, hazy = read_image(folder / "GT" / name), read_image(folder / "hazy" / name)
        yield name, torch.from_numpy(hazy).permute(2, 0, 1)[None], torch.from_numpy(gt).permute(2, 0, 1)[None]


def test_psnr_and_ssim_follow_the_protocol_on_real_pairs(reside_samples):
    for name, hazy, gt in _pairs(reside_samples):
        h, w = gt.shape[-2:]
        # DehazeFormer's test loop, written out
        reference_psnr = 10 * torch.log10(1 / F.mse_loss(hazy, gt, reduction="none").mean((1, 2, 3))).item()
        r = max(1, round(min(h, w) / 256))
        pooled = [F.adaptive_avg_pool2d(t, (int(h / r), int(w / r))) for t in (hazy, gt)]
        reference_ssim = pytorch_msssim_ssim(*pooled, data_range=1, size_average=False).item()
        assert abs(psnr(hazy, gt).item() - reference_psnr) <= 1e-6, name
        assert abs(ssim(hazy, gt).item() - reference_ssim) <= 1e-6, name


def test_metrics_agree_with_numpy_and_scikit_image(reside_samples):
    """Independent implementations in float64: NumPy for PSNR, scikit-image's Gaussian SSIM."""
    ratios = set()
    for name, hazy, gt in _pairs(reside_samples):
        a, b = hazy[0].double().numpy(), gt[0].double().numpy()
        numpy_psnr = 10 * math.log10(1 / np.mean((a - b) ** 2))
        assert abs(psnr(hazy, gt).item() - numpy_psnr) <= 1e-4, name
        r = ssim_downsample_ratio(*gt.shape[-2:])
        ratios.add(r)
        size = (int(gt.shape[-2] / r), int(gt.shape[-1] / r))
        pa, pb = (F.adaptive_avg_pool2d(t.double(), size)[0].numpy() for t in (hazy, gt))
        skimage_ssim = structural_similarity(pa, pb, channel_axis=0, data_range=1.0, gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False)
        assert abs(ssim(hazy, gt).item() - skimage_ssim) <= 2e-4, name
    assert ratios == {1, 2}  # 309×550 is scored at full size, the others at half size


def test_known_values():
    gt = torch.rand(2, 3, 64, 48)
    assert torch.allclose(psnr((gt + 0.1), gt), torch.tensor([20.0, 20.0]), atol=1e-4)
    assert torch.allclose(ssim(gt, gt), torch.ones(2))
    assert ssim(gt, torch.rand(2, 3, 64, 48)).max() < 0.1
    assert [ssim_downsample_ratio(*s) for s in [(64, 48), (460, 620), (413, 550), (1000, 1500), (300, 400)]] == [1, 2, 2, 4, 1]


def test_per_image_values_and_shape_errors():
    gt = torch.rand(3, 3, 32, 32)
    pred = gt.clone()
    pred[1] += 0.05
    pred[2] += 0.1
    values = psnr(pred, gt)
    # errors of exactly 0.05 and 0.1 up to float32 rounding of gt + δ − gt (≤ 1e-6 relative, 1e-5 dB):
    # 10·log10(1/0.05²) = 20·log10(20) = 26.0206 dB and 10·log10(1/0.1²) = 20 dB
    assert values.shape == (3,) and math.isinf(values[0])
    assert torch.allclose(values[1:], torch.tensor([20 * math.log10(20), 20.0]), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="one shape"):
        psnr(gt, gt[:, :, :16])
