"""Paired hazy/clear images in the RESIDE-6K layout (DehazeFormer convention):

    <root>/GT/<name>     clear image
    <root>/hazy/<name>   hazy image of the same scene, same file name, same size

`validate_paired_folder` checks every pair before training starts, so that a bad file is reported at
minute zero with its name instead of killing an epoch hours later.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from utils.image import is_image_file, read_image, to_tensor

from .transforms import PairedAugment, center_crop

CLEAR_DIR, HAZY_DIR = "GT", "hazy"
Mode = Literal["train", "valid", "test"]


class DatasetError(ValueError):
    """A dataset failed validation; the message lists every problem with its file."""


def _list_images(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and is_image_file(p)}


def _inspect_image(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """Return ((width, height), None) for a readable RGB image, else (None, problem)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            im.load()  # full decode: catches truncated and corrupt files
            size = im.size
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError… for broken files
        return None, f"unreadable or truncated image ({e})"
    if mode in ("L", "LA", "1", "I", "I;16", "F"):
        return None, f"grayscale image (mode {mode}); expected 3-channel RGB"
    if mode in ("RGBA", "PA", "P") and (mode != "P" or "transparency" in im.info):
        return None, f"image with an alpha channel (mode {mode}); expected 3-channel RGB"
    if mode not in ("RGB", "P"):
        return None, f"unsupported colour mode {mode}; expected 3-channel RGB"
    return size, None


def validate_paired_folder(root: Path | str, min_size: int | None = None, workers: int = 8) -> list[str]:
    """Check a paired folder and return its sorted pair names; raise DatasetError listing every problem.

    Checks: both sub-folders exist, every image has its partner, every image decodes fully as RGB,
    hazy and clear sizes agree, and (with `min_size`) each image is at least min_size on both sides.
    """
    root = Path(root)
    clear_dir, hazy_dir = root / CLEAR_DIR, root / HAZY_DIR
    for folder in (clear_dir, hazy_dir):
        if not folder.is_dir():
            raise DatasetError(f"{folder} is missing: a paired dataset needs {root}/{CLEAR_DIR}/ and {root}/{HAZY_DIR}/")
    clear, hazy = _list_images(clear_dir), _list_images(hazy_dir)
    problems = [f"{clear_dir / n}: no hazy partner {hazy_dir / n}" for n in sorted(clear - hazy)]
    problems += [f"{hazy_dir / n}: no clear partner {clear_dir / n}" for n in sorted(hazy - clear)]
    names = sorted(clear & hazy)
    if not names and not problems:
        raise DatasetError(f"{root} holds no image pairs")

    paths = [p for n in names for p in (clear_dir / n, hazy_dir / n)]
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes outside the GIL
        results = dict(zip(paths, pool.map(_inspect_image, paths)))
    for name in names:
        (clear_size, clear_problem), (hazy_size, hazy_problem) = results[clear_dir / name], results[hazy_dir / name]
        problems += [f"{p}: {msg}" for p, msg in ((clear_dir / name, clear_problem), (hazy_dir / name, hazy_problem)) if msg]
        if clear_problem or hazy_problem:
            continue
        if clear_size != hazy_size:
            problems.append(f"{hazy_dir / name}: size {hazy_size[0]}×{hazy_size[1]} differs from "
                            f"{clear_dir / name} ({clear_size[0]}×{clear_size[1]})")
        elif min_size is not None and min(clear_size) < min_size:
            problems.append(f"{hazy_dir / name}: size {clear_size[0]}×{clear_size[1]} is smaller than the "
                            f"{min_size}×{min_size} crop")
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DatasetError(f"{root}: {len(problems)} problem(s) found before training:\n  {shown}{more}")
    return names


def holdout_split(names: list[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministically split names into (train, held-out) by hashing each name: stable when files are added."""
    count = max(1, round(len(names) * fraction))
    ranked = sorted(names, key=lambda n: hashlib.sha1(f"{seed}:{n}".encode()).hexdigest())
    held_out = set(ranked[:count])
    return [n for n in names if n not in held_out], sorted(held_out)


class PairedImageDataset(Dataset):
    """Items are dicts {"hazy", "gt": 3×H×W tensors in [-1, 1], "name" and "source": the file name}.

    mode "train": index with `(index, sample_seed)` (see SeededSampler); `augment` crops and flips.
    mode "valid": centre crop of `crop_size`.  mode "test": the full image.
    """

    def __init__(self, root: Path | str, names: list[str], mode: Mode, augment: PairedAugment | None = None,
                 crop_size: int | None = None):
        if mode == "train" and augment is None:
            raise ValueError("a training dataset needs an augmentation")
        if mode == "valid" and crop_size is None:
            raise ValueError("a validation dataset needs a crop size")
        self.root, self.names, self.mode = Path(root), list(names), mode
        self.augment, self.crop_size = augment, crop_size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        name = self.names[index]
        images = [read_image(self.root / HAZY_DIR / name), read_image(self.root / CLEAR_DIR / name)]
        if self.mode == "train":
            images = self.augment(images, np.random.default_rng(sample_seed))
        elif self.mode == "valid":
            images = center_crop(images, self.crop_size)
        hazy, gt = images
        return {"hazy": to_tensor(hazy), "gt": to_tensor(gt), "name": name, "source": name}
