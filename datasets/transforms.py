"""Paired augmentation on H×W×C numpy images. Every random choice comes from the `rng` passed in,
so a sample's augmentation is fixed by its seed (see `datasets.sampler`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _crop_start(length: int, size: int, rng: np.random.Generator, edge_decay: float) -> int:
    # Uniform crops rarely touch the border; with probability size/length·edge_decay the crop is
    # snapped to one edge instead (DehazeFormer's "simple re-weight for the edge").
    if rng.random() < size / length * edge_decay:
        return 0 if rng.integers(2) == 0 else length - size
    return int(rng.integers(length - size + 1))


def random_crop(images: list[np.ndarray], size: int, rng: np.random.Generator, edge_decay: float = 0.0) -> list[np.ndarray]:
    h, w = images[0].shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {w}×{h} is smaller than the {size}×{size} crop")
    top, left = _crop_start(h, size, rng, edge_decay), _crop_start(w, size, rng, edge_decay)
    return [im[top:top + size, left:left + size] for im in images]


def center_crop(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    h, w = images[0].shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {w}×{h} is smaller than the {size}×{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return [im[top:top + size, left:left + size] for im in images]


@dataclass(frozen=True)
class PairedAugment:
    """Random crop (optionally edge re-weighted) → horizontal flip → optional random 90° rotation."""

    crop_size: int
    edge_decay: float = 0.0
    rotate90: bool = False

    def __call__(self, images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        images = random_crop(images, self.crop_size, rng, self.edge_decay)
        if rng.integers(2):
            images = [im[:, ::-1] for im in images]
        if self.rotate90:
            turns = int(rng.integers(4))
            images = [np.rot90(im, turns) for im in images]
        return [np.ascontiguousarray(im) for im in images]
