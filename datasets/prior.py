"""The language prior of MixCLDehazeNet: how a dataset, a checkpoint and a single photo get theirs.

CLIP classifies each hazy image zero-shot ("a photo of a {indoor, outdoor}"); the network is conditioned on
the text feature of that class. Prior modes (config `prior.mode`):

    clip       the text feature of the arg-max class (MixCLDehazeNet)
    clip-soft  the probability-weighted mix of the class text features
    labels     a known class per image (domain_labels.csv); the network learns one embedding per class
    none       no prior: the plain backbone

Datasets: CLIP runs once over a split folder and its results go to ONE cache file (per-image probabilities,
the class text features, the CLIP set-up, a fingerprint of the image list), reused while it still matches;
`attach_prior` adds `prior` and `domain` to every item. Checkpoints: `prior_config_of(model)` is the set-up the
network was trained with. Photos: `photo_prior(...)` computes one photo's prior on the fly. Everywhere a
known class (--label, --labels, domain_labels.csv) can stand in for CLIP's: its one-hot "probabilities".
"""
from __future__ import annotations

import csv
import functools
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from models.clip_prior import ClipPrior
from utils.config import PriorConfig
from utils.image import is_image_file, read_image, to_uint8

from .haze_model import add_haze
from .paired import HAZY_DIR, DatasetError
from .synthetic import DOMAINS, TEST_HAZE, SyntheticHazeDataset, load_photo

PRIOR_MODES = ("clip", "clip-soft", "labels", "none")
DOMAIN_LABELS_FILE = "domain_labels.csv"  # per split folder, rows `name,class`: the `labels` prior, per-domain scores


# --- which class each image shows, when it is known -----------------------------------------------------------

def read_domain_labels(path: Path | str, classes: Sequence[str] | None = None) -> dict[str, str]:
    """name → class from a `name,class` CSV (e.g. `indoor`/`outdoor`); `classes`: the allowed ones."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing: a CSV of `name,class` rows is needed here")
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    malformed = [",".join(row) for row in rows if len(row) != 2]
    if malformed:
        raise DatasetError(f"{path}: rows must be `name,class`; found {', '.join(malformed[:5])}")
    unknown = [f"{name}: {label!r}" for name, label in rows if classes is not None and label not in classes]
    if unknown:
        raise DatasetError(f"{path}: classes must be one of {list(classes)}; found {', '.join(unknown[:10])}")
    return dict(rows)


def known_domains(source: Path | str, names: list[str]) -> tuple[dict[str, str], str] | None:
    """(name → domain, where that comes from) for a test set whose scene domains are known: the synthetic
    photos, or a paired folder with a domain_labels.csv that covers every one of `names`. None otherwise."""
    if str(source) == "synthetic":
        return DOMAINS, "the photos' known domains"
    path = Path(source) / DOMAIN_LABELS_FILE
    if not path.is_file():
        return None
    labels = read_domain_labels(path)
    missing = [name for name in names if name not in labels]
    if missing:
        raise DatasetError(f"{path}: no domain for {len(missing)} image(s): {', '.join(missing[:10])}")
    return labels, str(path)


def given_classes(label: str | None, labels: Path | None, classes: Sequence[str]) -> Callable[[str], str] | None:
    """name → class from --label (one class for every image) or --labels (a `name,class` file); None when
    neither is given."""
    if label is not None and labels is not None:
        raise DatasetError("give either --label (one class for every image) or --labels (a file), not both")
    if label is not None:
        if label not in classes:
            raise DatasetError(f"--label {label!r}: the classes of this checkpoint's prior are {list(classes)}")
        return lambda name: label
    if labels is None:
        return None
    table = read_domain_labels(labels, classes)

    def lookup(name: str) -> str:
        if name not in table:
            raise DatasetError(f"{labels}: no class for {name}")
        return table[name]
    return lookup


def one_hot(names: Sequence[str], class_of: Callable[[str], str], classes: Sequence[str]) -> torch.Tensor:
    """The "probabilities" of known classes."""
    return torch.eye(len(classes))[[list(classes).index(class_of(n)) for n in names]]


# --- CLIP's class, cached per split folder ---------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _load_clip(model: str, pretrained: str, classes: tuple[str, ...], template: str, device: str) -> ClipPrior:
    return ClipPrior.load(model, pretrained, classes, template, device)


def load_clip(prior: PriorConfig, device: torch.device | str = "cpu") -> ClipPrior:
    """The CLIP model of a prior set-up, loaded once per process."""
    return _load_clip(prior.clip_model, prior.clip_pretrained, tuple(prior.classes), prior.template, str(device))


def clip_metadata(prior: PriorConfig) -> dict:
    return {"classes": list(prior.classes), "template": prior.template, "model": prior.clip_model,
            "pretrained": prior.clip_pretrained}


def image_list_fingerprint(folder: Path | str, names: Sequence[str]) -> str:
    """SHA-256 over the sorted names and byte sizes: changes when images are added, removed or replaced."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\0{(Path(folder) / name).stat().st_size}\n".encode())
    return digest.hexdigest()


def compute_prior_cache(clip: ClipPrior, folder: Path | str, names: Sequence[str], batch_size: int = 64) -> dict:
    """Run CLIP over the images `folder/<name>` (batched, with a progress bar)."""
    folder, probabilities = Path(folder), []
    for start in tqdm(range(0, len(names), batch_size), desc=f"CLIP prior of {folder}", unit="batch", dynamic_ncols=True):
        images = [Image.fromarray(to_uint8(read_image(folder / name))) for name in names[start:start + batch_size]]
        probabilities.append(clip.probabilities(images))
    return {"names": list(names), "probabilities": torch.cat(probabilities), "text_features": clip.text_features,
            "metadata": clip.metadata, "fingerprint": image_list_fingerprint(folder, names)}


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
    cache = compute_prior_cache(clip(), folder, names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(cache, tmp)
    tmp.replace(path)
    return cache


def prior_cache_path(prior: PriorConfig, folder: Path) -> Path:
    """One cache file per (split folder, CLIP weights); the fingerprint inside detects a changed image list."""
    folder_id = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    weights = Path(prior.clip_pretrained).stem
    return Path(prior.cache_dir) / f"{folder.parent.name}-{folder.name}-{folder_id}-{prior.clip_model}-{weights}.pt"


def split_prior_cache(prior: PriorConfig, folder: Path, device: torch.device | str = "cpu") -> dict:
    """The CLIP prior cache of a paired split folder (its hazy images), computed when missing or stale."""
    names = sorted(p.name for p in (folder / HAZY_DIR).iterdir() if is_image_file(p))
    return ensure_prior_cache(prior_cache_path(prior, folder), folder / HAZY_DIR, names, clip_metadata(prior),
                              lambda: load_clip(prior, device))


def synthetic_clip_cache(clip: ClipPrior) -> dict:
    """CLIP probabilities of each synthetic photo under medium haze (the classes are per photo)."""
    beta, airlight = TEST_HAZE[1]
    images = []
    for photo in DOMAINS:
        clear, depth = load_photo(photo, short_side=224)
        images.append(Image.fromarray(to_uint8(add_haze(clear, depth, beta, airlight))))
    return {"names": list(DOMAINS), "probabilities": clip.probabilities(images), "text_features": clip.text_features}


def text_prior(probabilities: torch.Tensor, text_features: torch.Tensor, mode: str) -> torch.Tensor:
    """B×D text features from B×K class probabilities and K×D class text features."""
    if mode == "clip":
        return text_features[probabilities.argmax(dim=1)]
    if mode == "clip-soft":
        return probabilities @ text_features
    raise ValueError(f"{mode!r} is not a CLIP prior mode")


# --- datasets ------------------------------------------------------------------------------------------------

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


def attach_prior(prior: PriorConfig, datasets: list[Dataset], device: torch.device | str = "cpu",
                 class_of: Callable[[str], str] | None = None) -> tuple[list[Dataset], dict]:
    """Wrap datasets so that items carry `prior` and `domain` (the class: known, or CLIP's); also return the
    network arguments the prior implies (text_dim or num_labels). `class_of` (name → class, e.g. from --label)
    replaces CLIP's class; the `labels` mode reads each split's domain_labels.csv unless it is given.
    CLIP runs at most once per split folder: its results are cached under `prior.cache_dir`."""
    if prior.mode not in PRIOR_MODES or prior.mode == "none":
        raise ValueError(f"no prior to attach for prior.mode {prior.mode!r}")
    clip_caches: dict = {}  # per source folder (None: the synthetic photos); train and validation often share one
    wrapped = []
    for dataset in datasets:
        if isinstance(dataset, SyntheticHazeDataset) and dataset.clean is not None:
            raise DatasetError("a language prior needs fixed hazy images: turn the clean folder into a paired "
                               "dataset with scripts/synthesize_haze.py and train on that")
        folder = None if isinstance(dataset, SyntheticHazeDataset) else dataset.root
        names = list(DOMAINS) if folder is None else list(dataset.names)
        known = class_of
        if known is None and prior.mode == "labels":
            labels = DOMAINS if folder is None else read_domain_labels(folder / DOMAIN_LABELS_FILE, prior.classes)
            missing = [n for n in names if n not in labels]
            if missing:
                raise DatasetError(f"{folder / DOMAIN_LABELS_FILE}: no class for {len(missing)} image(s): "
                                   f"{', '.join(missing[:10])}")
            known = labels.__getitem__
        if prior.mode == "labels":
            classes = [known(n) for n in names]
            priors = [prior.classes.index(c) for c in classes]
            model_args = {"num_labels": len(prior.classes)}
        elif known is not None:  # the classes are given: only the class texts go through CLIP, no image
            text_features = load_clip(prior, device).text_features
            classes = [known(n) for n in names]
            priors = list(text_prior(one_hot(names, known, prior.classes), text_features, prior.mode))
            model_args = {"text_dim": text_features.shape[1]}
        else:
            if folder not in clip_caches:
                clip_caches[folder] = (synthetic_clip_cache(load_clip(prior, device)) if folder is None
                                       else split_prior_cache(prior, folder, device))
            cache = clip_caches[folder]
            rows = {n: i for i, n in enumerate(cache["names"])}
            probabilities = cache["probabilities"][[rows[n] for n in names]]
            classes = [prior.classes[i] for i in probabilities.argmax(1).tolist()]
            priors = list(text_prior(probabilities, cache["text_features"], prior.mode))
            model_args = {"text_dim": cache["text_features"].shape[1]}
        wrapped.append(WithFields(dataset, prior=dict(zip(names, priors)), domain=dict(zip(names, classes))))
    return wrapped, model_args


# --- checkpoints and photos -------------------------------------------------------------------------------------

def prior_config_of(model: nn.Module) -> PriorConfig:
    """The prior set-up `model` was trained with (this project's checkpoints record it); for official
    MixCLDehazeNet checkpoints, the released one: CLIP ViT-B/32 (OpenAI), arg-max class."""
    return PriorConfig(**(getattr(model, "prior_config", None) or {"mode": "clip"}))


def photo_prior(model: nn.Module, device: torch.device, label: str | None = None,
                labels: Path | None = None) -> Callable[[str, Image.Image], torch.Tensor] | None:
    """(photo name, PIL photo) → the prior tensor `model` takes, on `device`; None for models without a prior.
    --label / --labels give the class instead of CLIP (the `labels` mode needs one of them)."""
    if not getattr(model, "takes_prior", False):
        return None
    prior = prior_config_of(model)
    class_of = given_classes(label, labels, prior.classes)
    if prior.mode == "labels":
        if class_of is None:
            raise DatasetError(f"this checkpoint was trained with the `labels` prior: give each photo's class with "
                               f"--label or --labels (label= in Python), one of {prior.classes}")
        return lambda name, image: torch.tensor([prior.classes.index(class_of(name))], device=device)
    clip = load_clip(prior, device)

    def prior_of(name: str, image: Image.Image) -> torch.Tensor:
        probabilities = (clip.probabilities([image.convert("RGB")]) if class_of is None
                         else one_hot([name], class_of, prior.classes))
        return text_prior(probabilities, clip.text_features, prior.mode).to(device)
    return prior_of
