"""Attaching the language prior (prior/) to the samples of datasets: every item gets `prior` (a text feature, or a
label index for the `labels` prior) and `domain` (its class: known, or CLIP's). CLIP runs at most once per split
folder; its result is cached (prior/cache.py)."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from prior import (
    DOMAIN_LABELS_FILE,
    PRIOR_MODES,
    PriorError,
    clip_metadata,
    ensure_prior_cache,
    load_clip,
    one_hot,
    prior_cache_path,
    read_domain_labels,
    text_prior,
)
from utils.config import PriorConfig
from utils.image import is_image_file, to_uint8

from .haze_model import add_haze
from .paired import HAZY_DIR, DatasetError
from .synthetic import DOMAINS, TEST_HAZE, SyntheticHazeDataset, load_photo


def known_domains(source: Path | str, names: list[str]) -> tuple[dict[str, str], str] | None:
    """(name → domain, where that comes from) for a test set whose scene domains are known: the synthetic
    photos, or a paired folder with a domain_labels.csv that covers every one of `names`. None otherwise."""
    if str(source) == "synthetic":
        return DOMAINS, "the photos' known domains"
    path = Path(source) / DOMAIN_LABELS_FILE
    if not os.path.lexists(path):  # a folder or a broken link of that name is reported by the reader
        return None
    labels = read_domain_labels(path)
    missing = [name for name in names if name not in labels]
    if missing:
        raise DatasetError(f"{path}: no domain for {len(missing)} image(s): {', '.join(missing[:10])}")
    return labels, str(path)


def split_prior_cache(prior: PriorConfig, folder: Path, device: torch.device | str = "cpu") -> dict:
    """The CLIP prior cache of a paired split folder (its hazy images), computed when missing or stale."""
    names = sorted(p.name for p in (folder / HAZY_DIR).iterdir() if is_image_file(p))
    return ensure_prior_cache(prior_cache_path(prior, folder), folder / HAZY_DIR, names, clip_metadata(prior),
                              lambda: load_clip(prior, device))


def synthetic_clip_cache(prior: PriorConfig, device: torch.device | str = "cpu") -> dict:
    """CLIP probabilities of each synthetic photo under medium haze (the classes are per photo)."""
    clip = load_clip(prior, device)
    beta, airlight = TEST_HAZE[1]
    images = []
    for photo in DOMAINS:
        clear, depth = load_photo(photo, short_side=224)
        images.append(Image.fromarray(to_uint8(add_haze(clear, depth, beta, airlight))))
    return {"names": list(DOMAINS), "probabilities": clip.probabilities(images), "text_features": clip.text_features}


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


def _source(dataset: Dataset) -> tuple[Path | None, list[str]]:
    """(split folder, or None for the synthetic photos; the image names) of a dataset."""
    if isinstance(dataset, SyntheticHazeDataset):
        if dataset.clean is not None:
            raise DatasetError("a language prior needs fixed hazy images: turn the clean folder into a paired "
                               "dataset with scripts/synthesize_haze.py and train on that")
        return None, list(DOMAINS)
    return dataset.root, list(dataset.names)


def _labelled_classes(prior: PriorConfig, folder: Path | None, names: list[str]) -> Callable[[str], str]:
    """name → class from the split's domain_labels.csv (the synthetic photos' known domains)."""
    labels = DOMAINS if folder is None else read_domain_labels(folder / DOMAIN_LABELS_FILE, prior.classes)
    missing = [n for n in names if n not in labels]
    if missing:
        raise PriorError(f"{folder / DOMAIN_LABELS_FILE}: no class for {len(missing)} image(s): {', '.join(missing[:10])}")
    return labels.__getitem__


def _label_priors(prior: PriorConfig, names: list[str], class_of: Callable[[str], str]) -> tuple[list, list[str], dict]:
    classes = [class_of(n) for n in names]
    return [prior.classes.index(c) for c in classes], classes, {"num_labels": len(prior.classes)}


def _given_class_priors(prior: PriorConfig, names: list[str], class_of: Callable[[str], str],
                        device) -> tuple[list, list[str], dict]:
    """The classes are given: only the class texts go through CLIP (when their features are not recorded), no image."""
    text_features = class_text_features(prior, device)
    priors = list(text_prior(one_hot(names, class_of, prior.classes), text_features, prior.mode))
    return priors, [class_of(n) for n in names], {"text_dim": text_features.shape[1]}


def _clip_priors(prior: PriorConfig, names: list[str], cache: dict) -> tuple[list, list[str], dict]:
    rows = {n: i for i, n in enumerate(cache["names"])}
    probabilities = cache["probabilities"][[rows[n] for n in names]]
    classes = [prior.classes[i] for i in probabilities.argmax(1).tolist()]
    priors = list(text_prior(probabilities, cache["text_features"], prior.mode))
    return priors, classes, {"text_dim": cache["text_features"].shape[1]}


def attach_prior(prior: PriorConfig, datasets: list[Dataset], device: torch.device | str = "cpu",
                 class_of: Callable[[str], str] | None = None) -> tuple[list[Dataset], dict]:
    """Wrap datasets so that items carry `prior` and `domain`; also return the network arguments the prior implies
    (`text_dim` or `num_labels`, and the prior settings themselves). `class_of` (name → class, e.g. from --label)
    replaces CLIP's class; the `labels` mode reads each split's domain_labels.csv unless it is given."""
    if prior.mode not in PRIOR_MODES or prior.mode == "none":
        raise ValueError(f"no prior to attach for prior.mode {prior.mode!r}")
    clip_caches: dict = {}  # per source folder (None: the synthetic photos); train and validation often share one
    wrapped, model_args = [], {}
    for dataset in datasets:
        folder, names = _source(dataset)
        if prior.mode == "labels":
            priors, classes, model_args = _label_priors(prior, names, class_of or _labelled_classes(prior, folder, names))
        elif class_of is not None:
            priors, classes, model_args = _given_class_priors(prior, names, class_of, device)
        else:
            if folder not in clip_caches:
                clip_caches[folder] = (synthetic_clip_cache(prior, device) if folder is None
                                       else split_prior_cache(prior, folder, device))
            priors, classes, model_args = _clip_priors(prior, names, clip_caches[folder])
        wrapped.append(WithFields(dataset, prior=dict(zip(names, priors)), domain=dict(zip(names, classes))))
    features = None if prior.mode == "labels" else class_text_features(prior, device, clip_caches).tolist()
    return wrapped, model_args | {"prior": dataclasses.asdict(dataclasses.replace(prior, text_features=features))}


def class_text_features(prior: PriorConfig, device, caches: dict | None = None) -> torch.Tensor:
    """K×D text features of the prior's classes: recorded in the settings, else from a CLIP cache, else CLIP's."""
    if prior.text_features is not None:
        return torch.tensor(prior.text_features)
    cached = next((cache["text_features"] for cache in (caches or {}).values()), None)
    return cached if cached is not None else load_clip(prior, device).text_features
