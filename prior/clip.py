"""CLIP's zero-shot class of a hazy image (open_clip): which class ("indoor" / "outdoor") it shows, and the text
feature of each class, as MixCLDehazeNet computes them:

    p = softmax(100 · cos(image embedding, text embedding of "a photo of a {class}"))

`ClipPrior.load` looks for the weights locally first; on an offline machine it stops at once with
`MissingWeightsError` naming the file it expected and how to obtain it, rather than retrying downloads.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import huggingface_hub
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from models.weights import WEIGHTS_DIR, MissingWeightsError, server_reachable
from utils.config import PriorConfig
from utils.paths import unreadable_file

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"
DEFAULT_CLASSES = ("indoor", "outdoor")
DEFAULT_TEMPLATE = "a photo of a {c}"
LOGIT_SCALE = 100.0  # MixCLDehazeNet's fixed temperature (CLIP's learned scale is 100 for OpenAI weights)


def _hub_location(tag_config: dict) -> tuple[str, list[str]]:
    """(repository, candidate file names) of a tag's weights on the Hugging Face hub."""
    repo_id, filename = os.path.split(tag_config["hf_hub"])
    filename = filename or "open_clip_pytorch_model.bin"
    return repo_id, ["open_clip_model.safetensors", filename]


def resolve_weights(model_name: str, pretrained: str) -> tuple[str, dict]:
    """A local weights file for (model, tag or file) and the create_model_and_transforms options the tag implies.

    A tag is looked up as pretrained/<model>-<tag>.{safetensors,bin,pt}, then in the Hugging Face cache,
    and downloaded (into that cache) only when the hub answers.
    """
    if Path(pretrained).suffix or "/" in pretrained:  # a file path
        path = Path(pretrained)
        if problem := unreadable_file(path):
            raise MissingWeightsError(f"CLIP weights file {path}: {problem}")
        return str(path), {}
    tag_config = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_config or "hf_hub" not in tag_config:
        raise ValueError(f"{pretrained!r} is neither a file nor an open_clip tag of {model_name!r} on the Hugging Face "
                         f"hub (tags: {', '.join(open_clip.list_pretrained_tags_by_model(model_name))})")
    options = {"force_quick_gelu": tag_config.get("quick_gelu", False)}  # OpenAI weights were trained with QuickGELU
    for key, option in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"),
                        ("resize_mode", "image_resize_mode")):
        if key in tag_config:
            options[option] = tag_config[key]

    expected = WEIGHTS_DIR / f"{model_name}-{pretrained}.bin"
    for suffix in (".safetensors", ".bin", ".pt"):
        if expected.with_suffix(suffix).is_file():
            return str(expected.with_suffix(suffix)), options
    repo_id, filenames = _hub_location(tag_config)
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, filename)
        if isinstance(cached, str):
            return cached, options
    if not huggingface_hub.constants.HF_HUB_OFFLINE and server_reachable(huggingface_hub.constants.ENDPOINT):
        return open_clip.download_pretrained(tag_config), options
    raise MissingWeightsError(
        f"CLIP weights {model_name} / {pretrained} are not on this machine and the Hugging Face hub cannot be "
        f"reached. On a machine with internet access run\n"
        f"    python -c \"from huggingface_hub import hf_hub_download; print(hf_hub_download('{repo_id}', '{filenames[1]}'))\"\n"
        f"and copy the file it prints to {expected} (or point prior.clip_pretrained at it).")


class ClipPrior:
    """Zero-shot classifier over `classes` with the class text features of `template`."""

    def __init__(self, model: torch.nn.Module, preprocess, tokenizer, classes: Sequence[str] = DEFAULT_CLASSES,
                 template: str = DEFAULT_TEMPLATE, metadata: dict | None = None):
        self.model = model.eval()
        self.preprocess = preprocess
        self.classes, self.template = tuple(classes), template
        self.device = next(model.parameters()).device
        self.metadata = {"classes": list(self.classes), "template": template, **(metadata or {})}
        tokens = tokenizer([template.format(c=c) for c in self.classes]).to(self.device)
        with torch.no_grad():
            self.text_features = F.normalize(model.encode_text(tokens).float(), dim=-1).cpu()  # K×D

    @classmethod
    def load(cls, model_name: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED,
             classes: Sequence[str] = DEFAULT_CLASSES, template: str = DEFAULT_TEMPLATE,
             device: torch.device | str = "cpu") -> ClipPrior:
        weights, options = resolve_weights(model_name, pretrained)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=weights, device=device, **options)
        return cls(model, preprocess, open_clip.get_tokenizer(model_name), classes, template,
                   {"model": model_name, "pretrained": pretrained})

    @torch.no_grad()
    def probabilities(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """B×K class probabilities of RGB PIL images."""
        batch = torch.stack([self.preprocess(image) for image in images]).to(self.device)
        features = F.normalize(self.model.encode_image(batch).float(), dim=-1).cpu()
        return (LOGIT_SCALE * features @ self.text_features.T).softmax(dim=-1)


@functools.lru_cache(maxsize=2)
def _load(model: str, pretrained: str, classes: tuple[str, ...], template: str, device: str) -> ClipPrior:
    return ClipPrior.load(model, pretrained, classes, template, device)


def load_clip(prior: PriorConfig, device: torch.device | str = "cpu") -> ClipPrior:
    """The CLIP classifier of a prior's settings, loaded once per process (and device)."""
    return _load(prior.clip_model, prior.clip_pretrained, tuple(prior.classes), prior.template, str(device))


def clip_metadata(prior: PriorConfig) -> dict:
    """What a CLIP result depends on, recorded in its cache: classes, prompt template, model, weights and how the
    images were read."""
    return {"classes": list(prior.classes), "template": prior.template, "model": prior.clip_model,
            "pretrained": prior.clip_pretrained, "image_reader": prior.image_reader}
