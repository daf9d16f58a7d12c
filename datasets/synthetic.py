"""Haze synthesised on the fly: on real photographs shipped inside scikit-image (no download), or on a
folder of clean images of your own (with optional depth maps).

Training and validation haze come from the multi-degradation model of datasets/haze_model.py (non-uniform
density, coloured and varying airlight, blur, noise, JPEG; configurable). Depth is normalised to [0, 1]:
- `motorcycle_left` has a real depth map (from the Middlebury disparity shipped beside it);
- the other photos use a depth proxy that grows towards the top of the frame (far scene above the horizon);
- a clean folder's images use `<depth_root>/<stem>.png|.npy` when given, else the same proxy.

Train photos give random crops with random haze; validation uses fixed draws on the same photos (so that
model selection never sees the test photos); test uses two held-out scikit-image photos at three fixed
levels of the classic model (I = J·t + A·(1 − t)), so that test figures stay comparable across haze settings.
"""
from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from torch.utils.data import Dataset

from utils.image import check_image, is_image_file, read_image, to_tensor
from utils.paths import unreadable_file, unreadable_folder

from .haze_model import HazeModel, add_haze, vertical_depth_proxy
from .paired import DatasetError
from .transforms import PairedAugment

TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right")
TEST_PHOTOS = ("chelsea", "coffee")
# (β, A) of the held-out test images: light, medium and heavy haze
TEST_HAZE = ((0.8, 0.80), (1.4, 0.90), (2.0, 1.00))
VALID_SEED = 12345
# Scene domain of each photo, for the `labels` prior of MixCL models (the Middlebury motorcycle is indoors).
DOMAINS = {"astronaut": "indoor", "rocket": "outdoor", "motorcycle_left": "indoor", "motorcycle_right": "indoor",
           "chelsea": "indoor", "coffee": "indoor"}


def _depth_from_disparity(disparity: np.ndarray) -> np.ndarray:
    invalid = ~np.isfinite(disparity)
    disparity = np.where(invalid, 0, disparity).astype(np.float32)
    disparity = cv2.inpaint(disparity, invalid.astype(np.uint8), 5, cv2.INPAINT_TELEA)  # fill occlusions
    depth = 1.0 / np.maximum(disparity, 1e-3)
    return ((depth - depth.min()) / (depth.max() - depth.min())).astype(np.float32)


@cache
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


def read_depth(path: Path) -> np.ndarray:
    """A depth map from an .npy array or a grayscale image (8 or 16 bit), normalised to [0, 1]."""
    if problem := unreadable_file(path):
        raise DatasetError(f"{path}: {problem}")
    depth = np.load(path) if path.suffix == ".npy" else cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    if depth is None or depth.ndim != 2:
        raise DatasetError(f"{path}: not a readable single-channel depth map")
    depth = depth.astype(np.float32)
    return (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-6)


class CleanImageFolder:
    """Clean images of a folder, and their depth maps when `depth_root` holds `<stem>.png` or `<stem>.npy`.
    Every image is checked up front (decoded with the project's reader, JPEGs strictly; at least `min_size` on
    each side; a depth map of the same size)."""

    def __init__(self, root: Path | str, depth_root: Path | str | None = None, min_size: int = 1):
        self.root = Path(root)
        if problem := unreadable_folder(self.root):
            raise DatasetError(f"clean image folder {self.root}: {problem}")
        self.depth_root = Path(depth_root) if depth_root else None
        self.names = sorted(p.name for p in self.root.iterdir() if is_image_file(p))
        if not self.names:
            raise DatasetError(f"{self.root}: no images")
        problems = []
        for name in self.names:
            size, problem = check_image(self.root / name)
            if problem:
                problems.append(f"{self.root / name}: {problem}")
                continue
            width, height = size
            if min(width, height) < min_size:
                problems.append(f"{self.root / name}: {width}×{height} is smaller than {min_size}")
            if (depth_path := self.depth_path(name)) is None:
                continue
            try:
                depth = read_depth(depth_path)
            except (DatasetError, OSError, ValueError) as e:
                problems.append(str(e))
                continue
            if depth.shape != (height, width):
                problems.append(f"{self.root / name}: depth map is {depth.shape[1]}×{depth.shape[0]}, "
                                f"the image {width}×{height}")
        if problems:
            raise DatasetError(f"{len(problems)} problem(s) in {self.root}:\n  " + "\n  ".join(problems))

    def depth_path(self, name: str) -> Path | None:
        if self.depth_root is None:
            return None
        for suffix in (".png", ".npy", ".tif", ".tiff"):
            path = self.depth_root / (Path(name).stem + suffix)
            if os.path.lexists(path):  # a folder or a broken link of that name is reported, not skipped
                return path
        return None

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(clear H×W×3 in [0, 1], depth H×W in [0, 1] or None)."""
        depth_path = self.depth_path(name)
        return read_image(self.root / name), None if depth_path is None else read_depth(depth_path)


class SyntheticHazeDataset(Dataset):
    """Items are dicts {"hazy", "gt": 3×H×W tensors in [-1, 1], "name", "source": the photo}, like PairedImageDataset.

    mode "train": `samples_per_epoch` random crops with random haze, indexed with `(index, sample_seed)`.
    mode "valid": `samples_per_epoch` crops of the train photos drawn from fixed seeds.
    mode "test": the held-out scikit-image photos, full size, at the three TEST_HAZE levels.
    `haze`: the degradation model (default: HazeModel()). `clean`: a CleanImageFolder to draw from instead
    of the scikit-image photos (train and valid modes).
    """

    def __init__(self, mode: str, crop_size: int = 64, samples_per_epoch: int = 256, short_side: int = 192,
                 haze: HazeModel | None = None, rotate90: bool = False, clean: CleanImageFolder | None = None):
        if mode not in ("train", "valid", "test"):
            raise ValueError(f"unknown mode {mode!r}")
        if crop_size > short_side and clean is None:
            raise ValueError(f"crop_size {crop_size} exceeds short_side {short_side}")
        self.mode, self.short_side, self.clean = mode, short_side, clean
        self.haze = haze or HazeModel()
        self.photos = clean.names if clean is not None else TRAIN_PHOTOS
        self.augment = PairedAugment(crop_size, rotate90=rotate90)
        self.test_items = [(photo, beta, airlight) for photo in TEST_PHOTOS for beta, airlight in TEST_HAZE]
        self.length = len(self.test_items) if mode == "test" else samples_per_epoch

    def __len__(self) -> int:
        return self.length

    def load(self, photo: str) -> tuple[np.ndarray, np.ndarray]:
        if self.clean is None:
            return load_photo(photo, self.short_side)
        clear, depth = self.clean.load(photo)
        return clear, vertical_depth_proxy(*clear.shape[:2]) if depth is None else depth

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        if self.mode == "test":
            photo, beta, airlight = self.test_items[index]
            clear, depth = load_photo(photo, self.short_side)
            return {"hazy": to_tensor(add_haze(clear, depth, beta, airlight)), "gt": to_tensor(clear),
                    "name": f"{photo}_beta{beta:.1f}_A{airlight:.1f}.png", "source": photo}
        # validation samples are drawn like training ones, but from fixed seeds
        rng = np.random.default_rng(sample_seed if self.mode == "train" else (VALID_SEED, index))
        photo = self.photos[rng.integers(len(self.photos))]
        clear, depth = self.augment(list(self.load(photo)), rng)
        hazy, _ = self.haze.synthesize(clear, depth, rng)
        return {"hazy": to_tensor(hazy), "gt": to_tensor(clear), "name": f"{Path(photo).stem}_{index}.png", "source": photo}
