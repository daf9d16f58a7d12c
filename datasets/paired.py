"""Paired hazy/clear images in the RESIDE-6K layout (DehazeFormer convention):

    <root>/GT/<name>     clear image
    <root>/hazy/<name>   hazy image of the same scene, same file name, same size

`validate_paired_folder` checks every pair before training starts, decoding each file with the reader the
loader uses (utils/image.py), so that a bad file is reported at minute zero with its name instead of killing
an epoch hours later or training silently on garbage.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from utils.cli import UserError
from utils.image import check_image, is_image_file, read_image, to_tensor, turns_sideways
from utils.paths import unreadable_file, unreadable_folder

from .transforms import PairedAugment, center_crop

CLEAR_DIR, HAZY_DIR = "GT", "hazy"
Mode = Literal["train", "valid", "test"]


class DatasetError(UserError, ValueError):
    """A dataset failed validation; the message lists every problem with its file."""


def _list_images(folder: Path) -> set[str]:
    """Image names in `folder`, broken links and folders named like images included (they are reported, not
    skipped)."""
    return {p.name for p in folder.iterdir() if is_image_file(p)}


def _unpaired(path: Path, partner: Path, kind: str) -> str:
    """The problem of an image without its partner: what it is when it is no image file (a folder named like one, a
    broken link), else the missing partner."""
    return f"{path}: {unreadable_file(path) or f'no {kind} partner {partner}'}"


def validate_paired_folder(root: Path | str, min_size: int | None = None, workers: int = 8) -> list[str]:
    """Check a paired folder and return its sorted pair names; raise DatasetError listing every problem.

    Checks: both sub-folders exist, every image has its partner, every image decodes fully with the project's
    reader (utils/image.py: orientation applied, JPEGs decoded strictly), hazy and clear sizes agree after
    orientation, and (with `min_size`) each image is at least min_size on both sides. Pairs whose files are
    both unusable (e.g. broken links) are reported too, never dropped.
    """
    root = Path(root)
    clear_dir, hazy_dir = root / CLEAR_DIR, root / HAZY_DIR
    for folder in (clear_dir, hazy_dir):
        if problem := unreadable_folder(folder):
            raise DatasetError(f"{folder}: {problem}; a paired dataset needs {root}/{CLEAR_DIR}/ and {root}/{HAZY_DIR}/")
    clear, hazy = _list_images(clear_dir), _list_images(hazy_dir)
    problems = [_unpaired(clear_dir / n, hazy_dir / n, "hazy") for n in sorted(clear - hazy)]
    problems += [_unpaired(hazy_dir / n, clear_dir / n, "clear") for n in sorted(hazy - clear)]
    names = sorted(clear & hazy)
    if not names and not problems:
        raise DatasetError(f"{root} holds no image pairs")

    paths = [p for n in names for p in (clear_dir / n, hazy_dir / n)]
    with ThreadPoolExecutor(workers) as pool:  # OpenCV and simplejpeg decode outside the GIL
        results = dict(zip(paths, pool.map(check_image, paths)))
    for name in names:
        problems += _pair_problems(clear_dir / name, hazy_dir / name, results, min_size)
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DatasetError(f"{root}: {len(problems)} problem(s), found before any image was used:\n  {shown}{more}")
    return names


def _pair_problems(clear: Path, hazy: Path, results: dict, min_size: int | None) -> list[str]:
    """What is wrong with one pair, given check_image's result for each file."""
    (clear_size, clear_problem), (hazy_size, hazy_problem) = results[clear], results[hazy]
    problems = [f"{p}: {msg}" for p, msg in ((clear, clear_problem), (hazy, hazy_problem)) if msg]
    if problems:
        return problems
    if clear_size != hazy_size:
        turned = [f"{p}'s EXIF orientation turns it by 90°" for p in (clear, hazy) if turns_sideways(p)]
        because = f" once EXIF orientation is applied ({'; '.join(turned)})" if turned else ""
        return [f"{hazy}: size {hazy_size[0]}×{hazy_size[1]} differs from {clear} ({clear_size[0]}×{clear_size[1]})"
                f"{because}"]
    if min_size is not None and min(clear_size) < min_size:
        return [f"{hazy}: size {clear_size[0]}×{clear_size[1]} is smaller than the {min_size}×{min_size} crop"]
    return []


def holdout_split(names: list[str], fraction: float, seed: int = 0,
                  scene_of: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Deterministically split names into (train, held-out): scenes ranked by a hash of their name, held out whole
    until `fraction` of the names is reached, so the split is stable when files are added. `scene_of` maps each
    name to its scene (default: every name its own scene): the hazy versions of one clear image stay together."""
    scene_of = scene_of or {n: n for n in names}
    count = max(1, round(len(names) * fraction))
    members: dict[str, list[str]] = {}
    for name in names:
        members.setdefault(scene_of[name], []).append(name)
    held_out: set[str] = set()
    for scene in sorted(members, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest()):
        if len(held_out) >= count:
            break
        held_out.update(members[scene])
    return [n for n in names if n not in held_out], sorted(held_out)


def scenes_by_clear_image(root: Path | str, names: list[str]) -> dict[str, str]:
    """Each pair's scene: pairs whose clear images are one file (hard or symbolic links to it, as
    scripts/prepare_data.py makes for the several hazy versions of one clear image) share the first of their names."""
    scene_of, first_of_file = {}, {}
    for name in sorted(names):
        stat = (Path(root) / CLEAR_DIR / name).stat()
        scene_of[name] = first_of_file.setdefault((stat.st_dev, stat.st_ino), name)
    return scene_of


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
