"""Classes known without CLIP (a domain-label file, --label, --labels), and the text feature of a class."""
from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from utils.cli import UserError
from utils.paths import unreadable_file

PRIOR_MODES = ("clip", "clip-soft", "labels", "none")
DOMAIN_LABELS_FILE = "domain_labels.csv"  # per split folder, rows `name,class`: the `labels` prior, per-domain scores


class PriorError(UserError, ValueError):
    """A class file or a given class that cannot serve as the prior; the message names the file and the rows."""


def read_domain_labels(path: Path | str, classes: Sequence[str] | None = None) -> dict[str, str]:
    """name → class from a `name,class` CSV (e.g. `indoor`/`outdoor`); `classes`: the allowed ones."""
    path = Path(path)
    if problem := unreadable_file(path):
        raise PriorError(f"{path}: {problem}; a CSV of `name,class` rows is needed here")
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    malformed = [",".join(row) for row in rows if len(row) != 2]
    if malformed:
        raise PriorError(f"{path}: rows must be `name,class`; found {', '.join(malformed[:5])}")
    unknown = [f"{name}: {label!r}" for name, label in rows if classes is not None and label not in classes]
    if unknown:
        raise PriorError(f"{path}: classes must be one of {list(classes)}; found {', '.join(unknown[:10])}")
    return dict(rows)


def given_classes(label: str | None, labels: Path | None, classes: Sequence[str]) -> Callable[[str], str] | None:
    """name → class from --label (one class for every image) or --labels (a `name,class` file); None when
    neither is given."""
    if label is not None and labels is not None:
        raise PriorError("give either --label (one class for every image) or --labels (a file), not both")
    if label is not None:
        if label not in classes:
            raise PriorError(f"--label {label!r}: the classes of this checkpoint's prior are {list(classes)}")
        return lambda name: label
    if labels is None:
        return None
    table = read_domain_labels(labels, classes)

    def lookup(name: str) -> str:
        if name not in table:
            raise PriorError(f"{labels}: no class for {name}")
        return table[name]
    return lookup


def one_hot(names: Sequence[str], class_of: Callable[[str], str], classes: Sequence[str]) -> torch.Tensor:
    """The "probabilities" of known classes."""
    return torch.eye(len(classes))[[list(classes).index(class_of(n)) for n in names]]


def text_prior(probabilities: torch.Tensor, text_features: torch.Tensor, mode: str) -> torch.Tensor:
    """B×D text features from B×K class probabilities and K×D class text features."""
    if mode == "clip":
        return text_features[probabilities.argmax(dim=1)]
    if mode == "clip-soft":
        return probabilities @ text_features
    raise ValueError(f"{mode!r} is not a CLIP prior mode")
