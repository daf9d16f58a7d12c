"""Dehazing photos with a loaded network, any size: uint8 RGB in, uint8 RGB out (or float RGB in [0, 1], as
utils.image.read_image gives, for 16-bit photos).

    from models import load_model
    from inference import Dehazer, dehaze

    net = load_model("runs/reside6k/mixcl-s/best.pt")
    clear = dehaze(net, photo)                 # one photo: numpy H×W×3 uint8 or PIL image, returns the same type
    dehazer = Dehazer(net, tile=512)           # many photos: the CLIP prior model is loaded once
    clear = dehazer(photo)

MixCL networks get their language prior as they were trained (prior/network.py): CLIP's zero-shot class of
each photo, or the class given as `label` (or per photo name in a `labels` file). Large photos are processed
in tiles (inference/tiling.py): always with `tile=N`, never with `tile=None`, and with `tile="auto"` when the
whole photo does not fit — on CUDA on an out-of-memory error, on the CPU above `max_whole_pixels`.

A Dehazer changes no process-wide setting. On the CPU the scripts also let glibc keep freed memory
(utils/cpu_memory.py), a process-wide setting they turn on in one visible line; call
`utils.cpu_memory.keep_freed_memory()` in your own program for the same speed.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import DehazingNetwork
from prior import photo_prior
from utils.cli import AUTO_TILE, MAX_WHOLE_PIXELS_CPU
from utils.image import to_tensor, to_uint8, to_unit_range
from utils.precision import autocast_dtype, precision

from .onnx import OnnxNetwork
from .tiling import tiled_forward

BACKENDS = ("pytorch", "onnxruntime")


def as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """H×W×3 RGB from a PIL image (any mode; uint8) or an array: uint8 (0–255) or float32 (0–1), RGB or RGBA
    whose alpha is dropped."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.float32):
        raise ValueError(f"expected a uint8 (0–255) or float32 (0–1) image, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    return image[..., :3]


def running_network(model: DehazingNetwork, amp: str, device_type: str) -> tuple[DehazingNetwork, torch.dtype | None]:
    """What runs for `amp` on a device type, and the autocast dtype it runs under: the model itself under autocast,
    or on the CPU in bf16 a bf16 copy of it without autocast (which would pad in fp32 around every reflect-padded
    convolution and cast every weight on every call: BENCHMARKS.md, "bf16 on the CPU")."""
    if device_type == "cpu" and precision(amp, device_type) == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16), None
    return model, autocast_dtype(amp, device_type)


class Dehazer:
    """A network ready for photos.

    `tile`: "auto", None (never) or a tile size in pixels. `amp` (utils/precision.py): auto (bf16 on a CPU that
    computes it natively, else fp32), off, fp16 (fp32 on the CPU) or bf16: autocast, and on the CPU a bf16 copy of
    the network made here, which takes and returns fp32 (models/interface.py). `backend`: pytorch or onnxruntime
    (inference/onnx.py: fp32 on the CPU only, `auto` included; tiles run in PyTorch). `label` / `labels`: MixCL
    networks are conditioned on this class (for every photo) or on each photo's class in a `name,class` file,
    instead of CLIP's. `photo_priors=False`: the caller hands `forward` the priors (test.py takes them from its
    dataset), none is computed from photos. `progress`: a progress bar over the tiles. The model is moved to the
    device (and on the CPU to channels-last) in place; `precision` says what runs (fp32, fp16 or bf16)."""

    def __init__(self, model: DehazingNetwork, device: torch.device | str | None = None, amp: str = "auto",
                 backend: str = "pytorch", label: str | None = None, labels: Path | None = None,
                 tile: int | str | None = "auto", overlap: int = 64, max_whole_pixels: int = MAX_WHOLE_PIXELS_CPU,
                 photo_priors: bool = True, progress: bool = False):
        if not (tile is None or tile == "auto" or isinstance(tile, int)):
            raise ValueError(f'tile must be "auto", None or a size in pixels, got {tile!r}')
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() and backend == "pytorch" else "cpu"))
        if backend == "onnxruntime" and (self.device.type != "cpu" or amp not in ("auto", "off")):
            raise ValueError(f"the onnxruntime backend runs fp32 on the CPU, not {amp} on {self.device}: use device "
                             f"cpu and amp off, or the pytorch backend")
        amp = "off" if backend == "onnxruntime" else amp
        self.precision = precision(amp, self.device.type)
        # channels-last: faster on the CPU, slower on CUDA GPUs (BENCHMARKS.md, "Inference")
        self.channels_last = self.device.type == "cpu"
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.network, self.amp_dtype = running_network(self.model, amp, self.device.type)
        self.onnx = None
        if backend == "onnxruntime":
            self.onnx = OnnxNetwork(model)
        self.tile, self.overlap, self.max_whole_pixels, self.progress = tile, overlap, max_whole_pixels, progress
        self.prior_of = photo_prior(model, self.device, label, labels) if photo_priors else None
        self.last_tiled = False  # whether the last photo went through tiles (predict.py reports it)
        self.told_tiles_in_pytorch = False

    def __call__(self, image: np.ndarray | Image.Image, name: str = "") -> np.ndarray | Image.Image:
        """The dehazed photo, of the input's type (uint8 for uint8 and PIL, float32 in [0, 1] for float32).
        `name`: the photo's file name, for a `labels` file."""
        rgb = as_rgb_array(image)
        unit = rgb if rgb.dtype == np.float32 else rgb / np.float32(255)
        x = to_tensor(unit)[None].to(self.device)
        prior = () if self.prior_of is None else (self.prior_of(name, Image.fromarray(to_uint8(unit))),)
        output = to_unit_range(self.forward(x, *prior))[0]
        if rgb.dtype == np.float32:
            return output.permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(to_uint8(output)) if isinstance(image, Image.Image) else to_uint8(output)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, *prior: torch.Tensor) -> torch.Tensor:
        """1×3×H×W in [-1, 1] (and the network's prior) → the output in [-1, 1], float32: the whole image, or
        tiles when `tile` says so (on CUDA also after an out-of-memory error)."""
        self.network.eval()
        inputs = (x, *prior)
        pixels = x.shape[-2] * x.shape[-1]
        whole = self.tile is None or (self.tile == "auto" and (self.device.type == "cuda" or pixels <= self.max_whole_pixels))
        if whole and self.onnx is not None:
            self.last_tiled = False
            return self.onnx(*inputs)
        if self.channels_last:
            inputs = (x.contiguous(memory_format=torch.channels_last), *prior)
        if whole:
            try:
                self.last_tiled = False
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    return self.network(*inputs).float()
            except torch.OutOfMemoryError:
                if self.tile is None:
                    raise
                torch.cuda.empty_cache()  # then fall through to tiles
        self.last_tiled = True
        if self.onnx is not None and not self.told_tiles_in_pytorch:
            self.told_tiles_in_pytorch = True
            warnings.warn("tiles run in PyTorch, not ONNX Runtime: their shared image-wide statistics need PyTorch hooks",
                          stacklevel=2)
        tile = AUTO_TILE if self.tile == "auto" else self.tile
        return tiled_forward(self.network, *inputs, tile=tile, overlap=self.overlap, amp_dtype=self.amp_dtype,
                             progress=self.progress)


def dehaze(model: DehazingNetwork, image: np.ndarray | Image.Image, **options) -> np.ndarray | Image.Image:
    """Dehaze one photo (numpy H×W×3 uint8 or float32, or a PIL image; the result has the same type).
    `options` are Dehazer's (device, amp, backend, label, tile, overlap): by default bf16 on a CPU that computes it
    natively, fp32 elsewhere."""
    return Dehazer(model, **options)(image)
