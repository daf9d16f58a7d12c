"""The language prior handed to MixCLDehazeNet with each image.

CLIP runs once over a split (`compute_prior_cache`, or scripts/compute_clip_prior.py) and its results go
to ONE file: per-image class probabilities, the class text features, the CLIP model/prompt metadata and a
fingerprint of the image list. `ensure_prior_cache` reuses a cache whose fingerprint and metadata still
match and recomputes a missing or stale one (which needs the CLIP weights; without them it stops with the
missing-weights message).

Prior modes (config `prior.mode`):
    clip       the text feature of the arg-max class (the seed)
    clip-soft  the probability-weighted mix of the class text features
    labels     a known domain label per image; the network learns one embedding per label
    none       no prior: the plain backbone
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from models.clip_prior import ClipPrior

PRIOR_MODES = ("clip", "clip-soft", "labels", "none")


def image_list_fingerprint(folder: Path | str, names: Sequence[str]) -> str:
    """SHA-256 over the sorted names and byte sizes: changes when images are added, removed or replaced."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\0{(Path(folder) / name).stat().st_size}\n".encode())
    return digest.hexdigest()


def compute_prior_cache(prior: ClipPrior, folder: Path | str, names: Sequence[str], batch_size: int = 64) -> dict:
    """Run CLIP over the images `folder/<name>` (batched, with a progress bar)."""
    folder, probabilities = Path(folder), []
    for start in tqdm(range(0, len(names), batch_size), desc=f"CLIP prior of {folder}", unit="batch", dynamic_ncols=True):
        images = []
        for name in names[start:start + batch_size]:
            with Image.open(folder / name) as image:
                images.append(image.convert("RGB"))
        probabilities.append(prior.probabilities(images))
    return {"names": list(names), "probabilities": torch.cat(probabilities), "text_features": prior.text_features,
            "metadata": prior.metadata, "fingerprint": image_list_fingerprint(folder, names)}


def stale_reason(cache: dict, folder: Path | str, names: Sequence[str], metadata: dict) -> str | None:
    """Why `cache` does not describe these images under this CLIP set-up, or None when it does."""
    if cache["metadata"] != metadata:
        return f"it was computed with {cache['metadata']}, not {metadata}"
    if cache["fingerprint"] != image_list_fingerprint(folder, names):
        return "the image list changed since it was computed"
    return None


def ensure_prior_cache(path: Path | str, folder: Path | str, names: Sequence[str], metadata: dict,
                       load_prior: Callable[[], ClipPrior]) -> dict:
    """Load the cache at `path` if it still matches; otherwise compute it with `load_prior()` and save it."""
    path = Path(path)
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        reason = stale_reason(cache, folder, names, metadata)
        if reason is None:
            return cache
        print(f"CLIP prior cache {path} is stale ({reason}); recomputing it")
    cache = compute_prior_cache(load_prior(), folder, names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(cache, tmp)
    tmp.replace(path)
    return cache


def text_prior(probabilities: torch.Tensor, text_features: torch.Tensor, mode: str) -> torch.Tensor:
    """B×D text features from B×K class probabilities and K×D class text features."""
    if mode == "clip":
        return text_features[probabilities.argmax(dim=1)]
    if mode == "clip-soft":
        return probabilities @ text_features
    raise ValueError(f"{mode!r} is not a CLIP prior mode")


def text_prior_table(cache: dict, mode: str) -> dict[str, torch.Tensor]:
    """name → text feature (D) for the `clip` or `clip-soft` mode."""
    return dict(zip(cache["names"], text_prior(cache["probabilities"], cache["text_features"], mode)))


def image_prior(clip: ClipPrior, image: Image.Image, mode: str = "clip") -> torch.Tensor:
    """The 1×D text feature of one image, computed on the fly (no cache)."""
    return text_prior(clip.probabilities([image.convert("RGB")]), clip.text_features, mode)


class WithFields(Dataset):
    """Adds fields looked up by each item's `source`: e.g. `prior` (a text feature or label index) and `domain`
    (the scene class: a known label, or the CLIP prior's class)."""

    def __init__(self, dataset: Dataset, **tables: dict):
        self.dataset, self.tables = dataset, tables

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        item = self.dataset[key]
        for field, table in self.tables.items():
            if item["source"] not in table:
                raise KeyError(f"no {field} for {item['source']!r}: the {field} table covers {len(table)} other images")
        return item | {field: table[item["source"]] for field, table in self.tables.items()}
