"""Datasets from config: validated up front, so that bad data stops a run before its first step."""
from __future__ import annotations

import csv
import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from models.clip_prior import ClipPrior
from utils.image import is_image_file

from .paired import HAZY_DIR, DatasetError, PairedImageDataset, holdout_split, validate_paired_folder
from .prior import WithFields, ensure_prior_cache, text_prior_table
from .haze_model import HazeModel, add_haze
from .synthetic import DOMAINS, TEST_HAZE, CleanImageFolder, SyntheticHazeDataset, load_photo
from .transforms import PairedAugment

SYNTHETIC_VALID_SAMPLES = 32  # enough crops for a stable validation PSNR, cheap on a CPU
DOMAIN_LABELS_FILE = "domain_labels.csv"  # per split folder, rows `name,class`: the `labels` prior, per-domain scores


def build_training_sets(data) -> tuple[Dataset, Dataset]:
    """(train, validation) datasets for a `DataConfig`."""
    if data.dataset == "synthetic":
        haze = HazeModel(**data.haze)
        clean = CleanImageFolder(data.clean_root, data.depth_root, data.crop_size) if data.clean_root else None
        train = SyntheticHazeDataset("train", data.crop_size, data.samples_per_epoch, haze=haze,
                                     rotate90=data.rotate90, clean=clean)
        return train, SyntheticHazeDataset("valid", data.crop_size, SYNTHETIC_VALID_SAMPLES, haze=haze, clean=clean)

    train_root = Path(data.root) / data.train_split
    names = validate_paired_folder(train_root, min_size=data.crop_size)
    if data.validation == "holdout":
        names, val_names = holdout_split(names, data.holdout_fraction)
        val_root = train_root
    else:  # "test-center-crop": what the anchors do (model selection on the test set)
        val_root = Path(data.root) / data.test_split
        val_names = validate_paired_folder(val_root, min_size=data.crop_size)
    augment = PairedAugment(data.crop_size, data.edge_decay, data.rotate90)
    return (PairedImageDataset(train_root, names, "train", augment),
            PairedImageDataset(val_root, val_names, "valid", crop_size=data.crop_size))


def build_test_set(source: Path | str) -> Dataset:
    """Full-resolution test images: a paired folder ({GT,hazy}/), or "synthetic" for the held-out synthetic set."""
    if str(source) == "synthetic":
        return SyntheticHazeDataset("test")
    return PairedImageDataset(source, validate_paired_folder(source), "test")


def prior_cache_path(prior, folder: Path) -> Path:
    """One cache file per (split folder, CLIP weights); the fingerprint inside detects a changed image list."""
    folder_id = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    weights = Path(prior.clip_pretrained).stem
    return Path(prior.cache_dir) / f"{folder.parent.name}-{folder.name}-{folder_id}-{prior.clip_model}-{weights}.pt"


def split_prior_cache(prior, folder: Path, load_clip) -> dict:
    """The CLIP prior cache of a paired split folder (its hazy images), computed when missing or stale."""
    metadata = {"classes": list(prior.classes), "template": prior.template,
                "model": prior.clip_model, "pretrained": prior.clip_pretrained}
    names = sorted(p.name for p in (folder / HAZY_DIR).iterdir() if is_image_file(p))
    return ensure_prior_cache(prior_cache_path(prior, folder), folder / HAZY_DIR, names, metadata, load_clip)


def clip_loader(prior, device: torch.device | str):
    """A function that loads the CLIP model of `prior` on its first call and returns the same one after."""
    return functools.cache(lambda: ClipPrior.load(prior.clip_model, prior.clip_pretrained, prior.classes,
                                                  prior.template, device))


def read_domain_labels(path: Path, classes: list[str] | None = None) -> dict[str, str]:
    """name → domain from a `name,class` CSV (e.g. `indoor`/`outdoor`); `classes`: the allowed ones."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing: the `labels` prior needs a CSV of `name,class` rows for each split")
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    malformed = [",".join(row) for row in rows if len(row) != 2]
    if malformed:
        raise DatasetError(f"{path}: rows must be `name,class`; found {', '.join(malformed[:5])}")
    unknown = [f"{name}: {label!r}" for name, label in rows if classes is not None and label not in classes]
    if unknown:
        raise DatasetError(f"{path}: classes must be one of {classes}; found {', '.join(unknown[:10])}")
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


def _synthetic_clip_cache(clip: ClipPrior) -> dict:
    """CLIP probabilities of each synthetic photo under medium haze (the classes are per photo)."""
    beta, airlight = TEST_HAZE[1]
    photos = list(DOMAINS)
    images = []
    for photo in photos:
        clear, depth = load_photo(photo, short_side=224)
        images.append(Image.fromarray(np.round(add_haze(clear, depth, beta, airlight) * 255).astype(np.uint8)))
    return {"names": photos, "probabilities": clip.probabilities(images), "text_features": clip.text_features}


def attach_prior(prior, datasets: list[Dataset], device: torch.device | str = "cpu") -> tuple[list[Dataset], dict]:
    """Wrap datasets so that items carry `prior` (see datasets/prior.py) for a PriorConfig whose mode is
    not "none", and `domain` (the label, or the CLIP prior's class); also return the model arguments the
    prior implies (text_dim or num_labels).

    CLIP runs at most once per split folder: its results are cached under `prior.cache_dir`.
    """
    load_clip = clip_loader(prior, device)

    def prior_table(folder: Path | None) -> tuple[dict, dict, dict]:  # folder None: the synthetic photos
        if prior.mode == "labels":
            labels = DOMAINS if folder is None else read_domain_labels(folder / DOMAIN_LABELS_FILE, prior.classes)
            return ({name: prior.classes.index(label) for name, label in labels.items()}, labels,
                    {"num_labels": len(prior.classes)})
        cache = _synthetic_clip_cache(load_clip()) if folder is None else split_prior_cache(prior, folder, load_clip)
        classes = dict(zip(cache["names"], (prior.classes[i] for i in cache["probabilities"].argmax(1).tolist())))
        return text_prior_table(cache, prior.mode), classes, {"text_dim": cache["text_features"].shape[1]}

    tables: dict = {}  # one table per source folder: train and held-out validation usually share one
    wrapped = []
    for dataset in datasets:
        if isinstance(dataset, SyntheticHazeDataset) and dataset.clean is not None:
            raise DatasetError("a language prior needs fixed hazy images: turn the clean folder into a paired "
                               "dataset with scripts/synthesize_haze.py and train on that")
        folder = None if isinstance(dataset, SyntheticHazeDataset) else dataset.root
        if folder not in tables:
            tables[folder] = prior_table(folder)
        priors, domains, _ = tables[folder]
        wrapped.append(WithFields(dataset, prior=priors, domain=domains))
    return wrapped, tables[folder][2]
