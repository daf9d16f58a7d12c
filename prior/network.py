"""The prior of a network as it was trained, for one photo at a time: CLIP's class of the photo, or a class given
by --label / --labels. A MixCL network carries its prior settings (`model.prior`, a constructor argument that
checkpoints store with the others)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from models import DehazingNetwork

from .classes import PriorError, given_classes, one_hot, text_prior
from .clip import load_clip


def photo_prior(model: DehazingNetwork, device: torch.device, label: str | None = None,
                labels: Path | None = None) -> Callable[[str, Image.Image], torch.Tensor] | None:
    """(photo name, PIL photo) → the prior tensor `model` takes, on `device`; None for models without a prior.
    --label / --labels give the class instead of CLIP (the `labels` mode needs one of them)."""
    if not model.takes_prior:
        return None
    prior = model.prior
    class_of = given_classes(label, labels, prior.classes)
    if prior.mode == "labels":
        if class_of is None:
            raise PriorError(f"this checkpoint was trained with the `labels` prior: give each photo's class with "
                             f"--label or --labels (label= in Python), one of {prior.classes}")
        return lambda name, image: torch.tensor([prior.classes.index(class_of(name))], device=device)
    if class_of is not None and prior.text_features is not None:  # the class is given: no CLIP needed
        features = torch.tensor(prior.text_features)
        return lambda name, image: text_prior(one_hot([name], class_of, prior.classes), features, prior.mode).to(device)
    clip = load_clip(prior, device)

    def prior_of(name: str, image: Image.Image) -> torch.Tensor:
        probabilities = (clip.probabilities([image.convert("RGB")]) if class_of is None
                         else one_hot([name], class_of, prior.classes))
        return text_prior(probabilities, clip.text_features, prior.mode).to(device)
    return prior_of
