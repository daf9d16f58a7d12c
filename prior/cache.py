"""CLIP's result for a folder of images, computed once and kept in one cache file: per-image class probabilities,
the class text features, the CLIP settings and a fingerprint of the image list, reused while they still match."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from utils.config import PriorConfig
from utils.image import read_image, to_uint8

from .clip import ClipPrior


def image_list_fingerprint(folder: Path | str, names: Sequence[str]) -> str:
    """SHA-256 over the sorted names and byte sizes: changes when images are added, removed or replaced."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\0{(Path(folder) / name).stat().st_size}\n".encode())
    return digest.hexdigest()


def clip_input(path: Path, image_reader: str = "opencv") -> Image.Image:
    """An image as CLIP sees it: read by this project's reader (EXIF orientation applied), or with "pil" as the
    released MixCLDehazeNet code opens it (PIL, no EXIF orientation; CLIP's preprocessing converts it to RGB)."""
    if image_reader == "pil":
        with Image.open(path) as image:
            return image.convert("RGB")
    return Image.fromarray(to_uint8(read_image(path)))


def compute_prior_cache(clip: ClipPrior, folder: Path | str, names: Sequence[str], batch_size: int = 64,
                        image_reader: str = "opencv") -> dict:
    """Run CLIP over the images `folder/<name>` (batched, with a progress bar)."""
    folder, probabilities = Path(folder), []
    for start in tqdm(range(0, len(names), batch_size), desc=f"CLIP prior of {folder}", unit="batch", dynamic_ncols=True):
        images = [clip_input(folder / name, image_reader) for name in names[start:start + batch_size]]
        probabilities.append(clip.probabilities(images))
    return {"names": list(names), "probabilities": torch.cat(probabilities), "text_features": clip.text_features,
            "metadata": clip.metadata | {"image_reader": image_reader}, "fingerprint": image_list_fingerprint(folder, names)}


def stale_reason(cache: dict, folder: Path | str, names: Sequence[str], metadata: dict) -> str | None:
    """Why `cache` does not describe these images under this CLIP set-up, or None when it does."""
    if cache["metadata"] != metadata:
        return f"it was computed with {cache['metadata']}, not {metadata}"
    if cache["fingerprint"] != image_list_fingerprint(folder, names):
        return "the image list changed since it was computed"
    return None


def ensure_prior_cache(path: Path | str, folder: Path | str, names: Sequence[str], metadata: dict,
                       clip: Callable[[], ClipPrior]) -> dict:
    """Load the cache at `path` if it still matches; otherwise compute it with `clip()` and save it."""
    path = Path(path)
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        reason = stale_reason(cache, folder, names, metadata)
        if reason is None:
            return cache
        print(f"CLIP prior cache {path} is stale ({reason}); recomputing it")
    cache = compute_prior_cache(clip(), folder, names, image_reader=metadata.get("image_reader", "opencv"))
    cache["metadata"] = metadata  # the settings it was computed for, as the next call will compare them
    save_prior_cache(path, cache)
    return cache


def save_prior_cache(path: Path | str, cache: dict) -> None:
    """Write a cache (the dict `compute_prior_cache` returns) atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(cache, tmp)
    tmp.replace(path)


def prior_cache_path(prior: PriorConfig, folder: Path) -> Path:
    """One cache file per (split folder, CLIP weights); the fingerprint inside detects a changed image list."""
    folder_id = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    weights = Path(prior.clip_pretrained).stem
    return Path(prior.cache_dir) / f"{folder.parent.name}-{folder.name}-{folder_id}-{prior.clip_model}-{weights}.pt"
