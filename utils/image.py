"""Image I/O and value-range helpers.

Value ranges are explicit everywhere in this project:
- files on disk: uint8 RGB;
- metrics: float tensors in [0, 1];
- networks: float tensors in [-1, 1] (the convention of DehazeFormer, MixDehazeNet and the seed).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file as float32 RGB H×W×3 in [0, 1], exactly as the field's loaders do (OpenCV, BGR→RGB, /255)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot be read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """An RGB image in [0, 1] (H×W×3 array or 3×H×W tensor) as H×W×3 uint8, clipped and rounded to nearest."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_image(path: Path | str, image: np.ndarray | torch.Tensor) -> None:
    """Write an RGB image (uint8, or [0, 1] as to_uint8 takes it) as an 8-bit file."""
    rgb8 = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 else to_uint8(image)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not be written")


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 array in [0, 1] → 3×H×W float tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) * 2.0 - 1.0


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Network range [-1, 1] → metric range [0, 1], clamping first as the evaluation protocol does."""
    return x.clamp(-1.0, 1.0) * 0.5 + 0.5


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> torch.Tensor:
    """Reflect-pad B×C×H×W on the right and bottom so that H and W become multiples of `multiple`
    and at least `min_size`. Reflection needs the pad to be smaller than the side; images too small for
    that are padded by replication instead."""
    h, w = x.shape[-2:]
    pad_h = max(min_size, h + (-h) % multiple) - h
    pad_w = max(min_size, w + (-w) % multiple) - w
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
