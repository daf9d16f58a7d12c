"""FADE, the Fog Aware Density Evaluator (Choi, You & Bovik, "Referenceless Prediction of Perceptual Fog Density
and Perceptual Image Defogging", IEEE TIP 24(11), 2015): the haze measure real-world dehazing papers report.
Lower = less fog.

This follows the authors' MATLAB release (FADE.m, CE.m, border_in.m, border_out.m from FADE_release.zip, LIVE,
The University of Texas at Austin) step by step, with its two multivariate Gaussian models
(`metrics/data/fade/`, shipped with the release's copyright notice). Twelve fog-aware statistics are taken per 8×8
patch; each patch's distance to the fog-free and to the foggy model gives D = mean(Df) / (mean(Dff) + 1).

FADE is sensitive to rounding. Its normalisation subtracts a 7×7 Gaussian local mean from the grey image; in flat
regions that difference is exactly 0 or one unit in the last place depending on how the filter's multiply-adds
are rounded, and a patch whose vertical neighbour products then all share one sign has no variance on the other
side and is dropped. Here the filter accumulates its 49 taps in the order the release's filtering does under GNU
Octave, each as a separate multiply and add (no fused multiply-add), so the result is the release's own value
on such a build. Builds that fuse the multiply-adds, or MATLAB's own filtering, can give values a few percent
apart on photos with flat sky or walls (docs/real_haze.md).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import scipy.io

from .inputs import UndefinedMeasure, as_rgb8, at_least
from .no_reference import matlab_rgb2gray, patch_entropy

PATCH = 8
MODEL_FOLDER = Path(__file__).parent / "data" / "fade"
_CE_SIGMA = 3.25
_CE_BORDER = 10                                    # CE.m's border_in/border_out with border size 20
_CE_SEMISATURATION = 0.1
_CE_NOISE = (9.225496406318721e-004 * 255, 8.969246659629488e-004 * 255, 2.069284034165411e-004 * 255)


@functools.cache
def fade_models() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"fogfree": (mean 12, covariance 12×12), "foggy": (...)}: the release's natural-image models (8×8 patches)."""
    models = {}
    for name in ("fogfree", "foggy"):
        values = scipy.io.loadmat(MODEL_FOLDER / f"natural_{name}_image_features_ps8.mat")
        models[name] = (np.ravel(values[f"mu_{name}param"]).astype(np.float64), values[f"cov_{name}param"].astype(np.float64))
    return models


@functools.cache
def _mscn_window() -> np.ndarray:
    """fspecial('gaussian', 7, 7/6) normalised twice as FADE.m does, with libm's exp and sequential sums."""
    sigma = 7 / 6
    raw = [[math.exp(-(x * x + y * y) / (2 * sigma ** 2)) for x in range(-3, 4)] for y in range(-3, 4)]
    total = 0.0
    for value in (v for column in zip(*raw) for v in column):  # sum(f(:)), column-major
        total += value
    window = [[v / total for v in row] for row in raw]
    column_sums = []
    for column in zip(*window):
        s = 0.0
        for v in column:
            s += v
        column_sums.append(s)
    total = 0.0
    for s in column_sums:
        total += s
    return np.array(window) / total


def _gaussian_filter(image: np.ndarray) -> np.ndarray:
    """imfilter(image, window, 'replicate') as Octave computes it: one multiply-add per tap over the padded image,
    the kernel's columns from last to first and within each its rows from last to first."""
    window = _mscn_window()
    padded = np.pad(image, 3, mode="edge")
    h, w = image.shape
    out = np.zeros_like(image)
    for dc in range(6, -1, -1):
        for dr in range(6, -1, -1):
            out += window[dr, dc] * padded[dr:dr + h, dc:dc + w]
    return out


def _patches(image: np.ndarray) -> np.ndarray:
    """Distinct 8×8 patches as rows of 64 values (im2col(image, [8 8], 'distinct'), one row per column)."""
    h, w = image.shape
    return image.reshape(h // PATCH, PATCH, w // PATCH, PATCH).transpose(0, 2, 1, 3).reshape(-1, PATCH * PATCH)


def _nanvar(rows: np.ndarray) -> np.ndarray:
    """Variance of each row ignoring NaNs, normalised by N − 1; 0 for one value, NaN for none (MATLAB's nanvar)."""
    valid = ~np.isnan(rows)
    count = valid.sum(axis=1)
    filled = np.where(valid, rows, 0.0)
    mean = filled.sum(axis=1) / np.maximum(count, 1)
    squares = np.where(valid, (rows - mean[:, None]) ** 2, 0.0).sum(axis=1)
    return np.where(count > 1, squares / np.maximum(count - 1, 1), np.where(count == 1, 0.0, np.nan))


def _one_sided_variances(products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patch: variance of the products ≤ 0 and of the products ≥ 0 (FADE.m's f3 and f2)."""
    rows = _patches(products)
    return _nanvar(np.where(rows > 0, np.nan, rows)), _nanvar(np.where(rows < 0, np.nan, rows))


def _contrast_kernel() -> np.ndarray:
    """CE.m's 20-tap derivative-of-Gaussian kernel (σ 3.25, x = −9.75 … 9.25), zero sum, unit second moment."""
    x = -3 * _CE_SIGMA + np.arange(20.0)
    gauss = np.exp(x ** 2 / (-2 * _CE_SIGMA ** 2)) / (math.sqrt(2 * math.pi) * _CE_SIGMA)
    gauss /= gauss.sum()
    kernel = (x ** 2 / _CE_SIGMA ** 4 - 1 / _CE_SIGMA ** 2) * gauss
    kernel -= kernel.sum() / len(x)
    return kernel / np.sum(0.5 * x * x * kernel)


def _border_in(image: np.ndarray, axis: int) -> np.ndarray:
    """border_in.m along one axis: the first 10 and the last 10 lines copied (in order) before and after."""
    first = np.take(image, range(_CE_BORDER), axis=axis)
    last = np.take(image, range(image.shape[axis] - _CE_BORDER, image.shape[axis]), axis=axis)
    return np.concatenate([first, image, last], axis=axis)


def _filtered(channel: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """conv2(border_in(channel), kernel, 'same') along `axis`, trimmed back by border_out: at each position
    m, the sum over taps j of kernel[j] · padded[m + 20 − j]."""
    padded = _border_in(channel, axis)
    n = channel.shape[axis]
    out = np.zeros_like(channel)
    for j, weight in enumerate(kernel):
        out += weight * np.take(padded, range(2 * _CE_BORDER - j, 2 * _CE_BORDER - j + n), axis=axis)
    return out


def contrast_energy(rgb: np.ndarray) -> list[np.ndarray]:
    """CE.m: perceived contrast energy of the grey, yellow-blue and red-green channels of an RGB image (0–255)."""
    r, g, b = (rgb[:, :, i] for i in range(3))
    kernel = _contrast_kernel()
    energies = []
    for channel, noise in zip((0.299 * r + 0.587 * g + 0.114 * b, 0.5 * r + 0.5 * g - b, r - g), _CE_NOISE):
        magnitude = np.sqrt(_filtered(channel, kernel, 1) ** 2 + _filtered(channel, kernel, 0) ** 2)
        peak = magnitude.max()
        with np.errstate(invalid="ignore"):  # a channel without contrast (a grey photo's colours): 0/0, made 0 below
            response = magnitude * peak / (magnitude + peak * _CE_SEMISATURATION) - noise
        energies.append(np.where(response > 1e-7, response, 0.0))
    return energies


def fog_features(image: np.ndarray) -> np.ndarray:
    """The 12 fog-aware statistics of every 8×8 patch (P×12, patches in column-major order), before the log."""
    rgb8 = as_rgb8(image, "FADE")
    at_least(rgb8, 2 * PATCH, 2 * PATCH, "FADE")
    rgb8 = rgb8[: rgb8.shape[0] // PATCH * PATCH, : rgb8.shape[1] // PATCH * PATCH]
    rgb = rgb8.astype(np.float64)
    gray = matlab_rgb2gray(rgb8)
    mean = _gaussian_filter(gray)
    sigma = np.sqrt(np.abs(_gaussian_filter(gray * gray) - mean * mean))
    mscn = (gray - mean) / (sigma + 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a black neighbourhood has no σ/μ (NaN, as in the release)
        cv = sigma / mean
    negative_var, positive_var = _one_sided_variances(mscn * np.roll(mscn, 1, axis=0))
    rg, by = rgb[:, :, 0] - rgb[:, :, 1], 0.5 * (rgb[:, :, 0] + rgb[:, :, 1]) - rgb[:, :, 2]
    rg_patches, by_patches = _patches(rg), _patches(by)
    colourfulness = (np.sqrt(rg_patches.var(axis=1, ddof=1) + by_patches.var(axis=1, ddof=1))
                     + 0.3 * np.sqrt(rg_patches.mean(axis=1) ** 2 + by_patches.mean(axis=1) ** 2))
    top, bottom = rgb.max(axis=2), rgb.min(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        saturation = np.where(top > bottom, 1 - bottom / top, 0.0)
    ce_gray, ce_by, ce_rg = contrast_energy(rgb)
    means = [_patches(x).mean(axis=1) for x in (sigma, cv, ce_gray, ce_by, ce_rg)]
    return np.stack([_nanvar(_patches(mscn)), positive_var, negative_var, *means,
                     patch_entropy(_patches(gray).astype(np.uint8)), _patches(bottom / 255).mean(axis=1),
                     _patches(saturation).mean(axis=1), colourfulness], axis=1)


def _distances(features: np.ndarray, model: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per patch p: sqrt(d · ((C + v_p)/2)⁻¹ · dᵀ), d = model mean − features, v_p the variance of the patch's own
    features added to every entry of the model covariance C; NaN for a patch with an undefined feature."""
    mean, covariance = model
    spread = _nanvar(features)
    difference = mean - features
    distances = np.full(len(features), np.nan)
    ok = np.isfinite(difference).all(axis=1)
    matrices = (covariance[None] + spread[ok, None, None]) / 2
    solved = np.linalg.solve(matrices, difference[ok, :, None])[:, :, 0]
    distances[ok] = np.sqrt(np.einsum("pi,pi->p", solved, difference[ok]))
    return distances


def fade(image: np.ndarray) -> float:
    """FADE of an image (RGB or grey, uint8 or float in [0, 1]; at least 16×16): perceptual fog density, lower = less
    fog. Patches with an undefined statistic are left out of the means, as in the release; UndefinedMeasure when
    that leaves none (a flat image)."""
    features = np.log(1 + fog_features(image))  # log(1 + f), as the release writes it (not log1p)
    models = fade_models()
    fog_free, foggy = _distances(features, models["fogfree"]), _distances(features, models["foggy"])
    if np.isnan(fog_free).all() or np.isnan(foggy).all():
        raise UndefinedMeasure(f"FADE is undefined: none of its {len(features)} 8×8 patches has all its fog statistics "
                               f"(a flat image)")
    return float(np.nanmean(fog_free) / (np.nanmean(foggy) + 1))
