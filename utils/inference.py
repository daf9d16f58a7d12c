"""Dehazing photos with a loaded network: uint8 RGB in, uint8 RGB out, any size.

    from models import load_model
    from utils.inference import Dehazer, dehaze

    net = load_model("runs/reside6k/mixcl-s/best.pt")
    clear = dehaze(net, photo)                 # one photo: numpy H×W×3 uint8 or PIL image, returns the same type
    dehazer = Dehazer(net, tile=512)           # many photos: the CLIP prior model is loaded once
    clear = dehazer(photo)

MixCL networks get their language prior as they were trained: CLIP's zero-shot class of each photo (`clip`,
`clip-soft`), or the class given as `label` (`labels`). Large photos are processed in tiles
(utils/tiling.py): always with `tile=N`, never with `tile=None`, and with `tile="auto"` when the whole photo
does not fit — on CUDA on an out-of-memory error, on the CPU above `max_whole_pixels`.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from datasets.prior import image_prior
from models.clip_prior import ClipPrior

from .config import ConfigError, PriorConfig
from .image import to_tensor, to_uint8, to_unit_range
from .tiling import tiled_forward

AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# Whole-image inference on the CPU above this size switches to tiles: MixCL-S took 2.6 GB (peak RSS) for
# a 1-megapixel photo whole (BENCHMARKS.md, "Inference"), growing about 2 GB per megapixel.
MAX_WHOLE_PIXELS_CPU = 2_000_000


@functools.lru_cache(maxsize=2)
def _clip(model_name: str, pretrained: str, classes: tuple[str, ...], template: str, device: str) -> ClipPrior:
    return ClipPrior.load(model_name, pretrained, classes, template, device)


def prior_function(model: nn.Module, label: str | None, device: torch.device) -> Callable[[Image.Image], torch.Tensor] | None:
    """PIL photo → the prior tensor `model` takes (on `device`), or None for models without a prior."""
    if not getattr(model, "takes_prior", False):
        return None
    # the set-up the network was trained with; the seed's (CLIP ViT-B/32, arg-max class) for official checkpoints
    prior = PriorConfig(**(getattr(model, "prior_config", None) or {"mode": "clip"}))
    if prior.mode == "labels":
        if label not in prior.classes:
            raise ConfigError(f"this checkpoint was trained with the `labels` prior: give the class with --label "
                              f"(label= in Python), one of {prior.classes}")
        return lambda image: torch.tensor([prior.classes.index(label)], device=device)
    clip = _clip(prior.clip_model, prior.clip_pretrained, tuple(prior.classes), prior.template, str(device))
    return lambda image: image_prior(clip, image, prior.mode).to(device)


def as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """H×W×3 uint8 RGB from a PIL image (any mode) or a uint8 array (RGB, or RGBA whose alpha is dropped)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (0–255), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    return image[..., :3]


class Dehazer:
    """A network ready for photos. `tile`: "auto", None (never) or a tile size in pixels; `amp`: off, fp16
    or bf16 autocast; `label`: the class for MixCL networks trained with the `labels` prior; `progress`: a
    progress bar over the tiles."""

    def __init__(self, model: nn.Module, device: torch.device | str | None = None, amp: str = "off",
                 label: str | None = None, tile: int | str | None = "auto", overlap: int = 64,
                 max_whole_pixels: int = MAX_WHOLE_PIXELS_CPU, progress: bool = False):
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {list(AMP_DTYPES)}, got {amp!r}")
        if not (tile is None or tile == "auto" or isinstance(tile, int)):
            raise ValueError(f'tile must be "auto", None or a size in pixels, got {tile!r}')
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.amp_dtype = AMP_DTYPES[amp]
        self.tile, self.overlap, self.max_whole_pixels, self.progress = tile, overlap, max_whole_pixels, progress
        self.prior_of = prior_function(model, label, self.device)
        self.last_tiled = False  # whether the last photo went through tiles (predict.py reports it)

    def __call__(self, image: np.ndarray | Image.Image) -> np.ndarray | Image.Image:
        rgb = as_rgb_array(image)
        output = self.dehaze_tensor(to_tensor(rgb / np.float32(255))[None].to(self.device), rgb)
        output8 = to_uint8(to_unit_range(output)[0])
        return Image.fromarray(output8) if isinstance(image, Image.Image) else output8

    @torch.no_grad()
    def dehaze_tensor(self, x: torch.Tensor, rgb: np.ndarray) -> torch.Tensor:
        """1×3×H×W in [-1, 1] → the output in [-1, 1] (float32); `rgb` is the photo the prior is computed on."""
        inputs = (x,) if self.prior_of is None else (x, self.prior_of(Image.fromarray(rgb)))
        pixels = x.shape[-2] * x.shape[-1]
        whole = self.tile is None or (self.tile == "auto" and (self.device.type == "cuda" or pixels <= self.max_whole_pixels))
        if whole:
            try:
                self.last_tiled = False
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    return self.model(*inputs).float()
            except torch.OutOfMemoryError:
                if self.tile is None:
                    raise
                torch.cuda.empty_cache()  # then fall through to tiles
        self.last_tiled = True
        tile = 512 if self.tile == "auto" else self.tile
        return tiled_forward(self.model, *inputs, tile=tile, overlap=self.overlap, amp_dtype=self.amp_dtype,
                             progress=self.progress)


def dehaze(model: nn.Module, image: np.ndarray | Image.Image, **options) -> np.ndarray | Image.Image:
    """Dehaze one photo (numpy H×W×3 uint8 or PIL image; the result has the same type). `options` are
    Dehazer's (device, amp, label, tile, overlap)."""
    return Dehazer(model, **options)(image)
