"""Synthetic haze on real photographs shipped inside scikit-image: a dataset that needs no download.

Haze follows the atmospheric scattering model  I = J·t + A·(1 − t),  t = exp(−β·depth),  with β and the
(grey) atmospheric light A drawn per sample. Depth is normalised to [0, 1]:
- `motorcycle_left` has a real depth map (from the Middlebury disparity shipped beside it);
- the other photos use a depth proxy that grows towards the top of the frame (far scene above the horizon).

Train photos give random crops with random haze; validation uses fixed haze on the same photos (so that
model selection never sees the test photos); test uses two held-out photos at three fixed haze levels.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import skimage.data
from torch.utils.data import Dataset

from utils.image import to_tensor

from .transforms import PairedAugment

TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right")
TEST_PHOTOS = ("chelsea", "coffee")
# (β, A) of the held-out test images: light, medium and heavy haze
TEST_HAZE = ((0.8, 0.80), (1.4, 0.90), (2.0, 1.00))
VALID_SEED = 12345
# Scene domain of each photo, for the `labels` prior of MixCL models (the Middlebury motorcycle is indoors).
DOMAINS = {"astronaut": "indoor", "rocket": "outdoor", "motorcycle_left": "indoor", "motorcycle_right": "indoor",
           "chelsea": "indoor", "coffee": "indoor"}


def add_haze(clear: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """Atmospheric scattering model on H×W×3 clear image in [0, 1] and H×W depth in [0, 1]."""
    transmission = np.exp(-beta * depth)[..., None]
    return (clear * transmission + airlight * (1.0 - transmission)).astype(np.float32)


def vertical_depth_proxy(height: int, width: int) -> np.ndarray:
    """Depth 1 at the top row falling linearly to 0 at the bottom row."""
    return np.repeat(np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None], width, axis=1)


def _depth_from_disparity(disparity: np.ndarray) -> np.ndarray:
    invalid = ~np.isfinite(disparity)
    disparity = np.where(invalid, 0, disparity).astype(np.float32)
    disparity = cv2.inpaint(disparity, invalid.astype(np.uint8), 5, cv2.INPAINT_TELEA)  # fill occlusions
    depth = 1.0 / np.maximum(disparity, 1e-3)
    return ((depth - depth.min()) / (depth.max() - depth.min())).astype(np.float32)


@lru_cache(maxsize=None)
def load_photo(name: str, short_side: int) -> tuple[np.ndarray, np.ndarray]:
    """(clear H×W×3 float32 in [0, 1], depth H×W in [0, 1]), resized so that the shorter side is `short_side`."""
    if name.startswith("motorcycle"):
        left, right, disparity = skimage.data.stereo_motorcycle()
        rgb = left if name == "motorcycle_left" else right
        depth = _depth_from_disparity(disparity) if name == "motorcycle_left" else None
    else:
        rgb, depth = getattr(skimage.data, name)(), None
    rgb = rgb.astype(np.float32) / 255.0
    if depth is None:
        depth = vertical_depth_proxy(*rgb.shape[:2])
    scale = short_side / min(rgb.shape[:2])
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.resize(depth, size, interpolation=cv2.INTER_AREA)


class SyntheticHazeDataset(Dataset):
    """Items are dicts {"hazy", "gt": 3×H×W tensors in [-1, 1], "name", "source": the photo}, like PairedImageDataset.

    mode "train": `samples_per_epoch` random crops, indexed with `(index, sample_seed)`.
    mode "valid": `samples_per_epoch` crops of the train photos drawn from fixed seeds.
    mode "test": the held-out photos, full size, at the three TEST_HAZE levels.
    """

    def __init__(self, mode: str, crop_size: int = 64, samples_per_epoch: int = 256, short_side: int = 192,
                 beta_range: tuple[float, float] = (0.6, 2.2), airlight_range: tuple[float, float] = (0.7, 1.0),
                 rotate90: bool = False):
        if mode not in ("train", "valid", "test"):
            raise ValueError(f"unknown mode {mode!r}")
        if crop_size > short_side:
            raise ValueError(f"crop_size {crop_size} exceeds short_side {short_side}")
        self.mode, self.short_side = mode, short_side
        self.beta_range, self.airlight_range = beta_range, airlight_range
        self.augment = PairedAugment(crop_size, rotate90=rotate90)
        self.test_items = [(photo, beta, airlight) for photo in TEST_PHOTOS for beta, airlight in TEST_HAZE]
        self.length = len(self.test_items) if mode == "test" else samples_per_epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        if self.mode == "test":
            photo, beta, airlight = self.test_items[index]
            clear, depth = load_photo(photo, self.short_side)
            name = f"{photo}_beta{beta:.1f}_A{airlight:.1f}.png"
        else:
            # validation samples are drawn like training ones, but from fixed seeds
            rng = np.random.default_rng(sample_seed if self.mode == "train" else (VALID_SEED, index))
            photo = TRAIN_PHOTOS[rng.integers(len(TRAIN_PHOTOS))]
            clear, depth = self.augment(list(load_photo(photo, self.short_side)), rng)
            beta, airlight = rng.uniform(*self.beta_range), rng.uniform(*self.airlight_range)
            name = f"{photo}_{index}.png"
        hazy = add_haze(clear, depth, beta, airlight)
        return {"hazy": to_tensor(hazy), "gt": to_tensor(clear), "name": name, "source": photo}
