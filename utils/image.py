"""Image files, value ranges and padding.

Value ranges are explicit everywhere in this project:
- files on disk: 8-bit (or 16-bit) RGB;
- metrics: float tensors in [0, 1];
- networks: float tensors in [-1, 1] (the convention of DehazeFormer, MixDehazeNet and MixCLDehazeNet).

`read_image` is the one reader of the project: training, validation, test.py, predict.py, evaluate_real.py and
the up-front checks all see the same pixels in the same orientation. It decodes with OpenCV as the evaluation
protocol does, and one rule covers every kind of file:
- EXIF orientation is applied (as OpenCV's IMREAD_COLOR and every photo viewer do);
- 16-bit files keep their precision (scaled by 1/65535, 8-bit ones by 1/255);
- grayscale becomes gray RGB (as IMREAD_COLOR does);
- an alpha channel must be fully opaque and is dropped; transparent pixels are an error, since what they
  should look like is not in the file.
`check_image` goes further before a run starts: JPEGs are also decoded strictly, so that truncated or
corrupted data (which OpenCV decodes into garbage with only a line on stderr) is reported with the file name.
What OpenCV and libjpeg print while `check_image` decodes a damaged file is silenced: the problem it reports says
it, naming the file.
"""
from __future__ import annotations

import contextlib
import glob
import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image

from .cli import MAX_PIXELS, UserError
from .paths import LINK_LOOP, is_link_loop, unreadable_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
Image.MAX_IMAGE_PIXELS = None  # the limit is MAX_PIXELS, checked with a message naming the file
_ORIENTATION = 0x0112  # EXIF tag


class ImageError(UserError, ValueError):
    """A file that cannot be used as an image; the message names it and says why."""


def is_image_file(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_images(inputs: list[str]) -> list[Path]:
    """Every image named by the inputs (files, folders — not recursive — and glob patterns), in order,
    without repeats; an input that names nothing is an error."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            try:
                matches = sorted(p for p in path.iterdir() if is_image_file(p))
            except PermissionError:
                raise ImageError(f"{item}: permission denied: this user may not list this folder") from None
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if is_image_file(p))
        if not matches:
            problem = LINK_LOOP if is_link_loop(path) else "no such image, folder with images, or matching pattern"
            raise ImageError(f"{item}: {problem}")
        found += [p for p in matches if p not in found]
    return found


def _header(path: Path) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation 1–8) as stored, read from the header alone, or None when PIL cannot read
    it (OpenCV's decode decides then); refuses oversized images."""
    try:
        with warnings.catch_warnings(), Image.open(path) as image:  # e.g. "Corrupt EXIF data": decoding decides
            warnings.simplefilter("ignore")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{path}: its header claims {width}×{height} pixels, more than {MAX_PIXELS:,}; "
                                 "refusing to decode it")
            orientation = image.getexif().get(_ORIENTATION, 1)
    except ImageError:
        raise
    except Exception:  # noqa: BLE001 — PIL may not know the format or its metadata
        return None
    return width, height, orientation if orientation in range(1, 9) else 1


def _orientation(path: Path) -> int:
    """The EXIF orientation (1–8, 1 = upright), read from the header; also refuses oversized images."""
    header = _header(path)
    return 1 if header is None else header[2]


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of the image `read_image` returns (EXIF orientation applied), from the header alone."""
    header = _header(Path(path))
    if header is None:
        raise ImageError(f"{path}: {unreadable_file(path) or 'not an image file (its header cannot be read)'}")
    width, height, orientation = header
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def turns_sideways(path: Path | str) -> bool:
    """Whether the file's EXIF orientation turns it by 90° (width and height swap when it is read)."""
    return _orientation(Path(path)) in (5, 6, 7, 8)


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn the stored pixels upright, as EXIF orientation 1–8 says (the transposes of PIL's exif_transpose)."""
    if orientation in (5, 6, 7, 8):
        image = image.swapaxes(0, 1)  # the transpose, then a flip or a mirror:
    flip = {2: (1,), 3: (0, 1), 4: (0,), 5: (), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    return np.flip(image, flip) if flip else image


_quiet = {"lock": threading.Lock(), "users": 0, "saved": None}


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what C libraries write to stderr (OpenCV's log, libjpeg's warnings) to /dev/null inside the block:
    this module's own error names the file and says it better. Used only by the checks before a run (the whole
    process's stderr is redirected meanwhile); safe with several checking threads: stderr is restored when the
    last one leaves."""
    with _quiet["lock"]:
        if _quiet["users"] == 0:
            with open(os.devnull, "wb") as null:
                _quiet["saved"] = os.dup(2)
                os.dup2(null.fileno(), 2)
        _quiet["users"] += 1
    try:
        yield
    finally:
        with _quiet["lock"]:
            _quiet["users"] -= 1
            if _quiet["users"] == 0:
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])


def read_image(path: Path | str) -> np.ndarray:
    """The image at `path` as float32 RGB H×W×3 in [0, 1], by the rules in this module's docstring."""
    path = Path(path)
    if problem := unreadable_file(path):
        raise ImageError(f"{path}: {problem}")
    orientation = _orientation(path)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if stored is None:
        raise ImageError(f"{path}: cannot be decoded as an image (damaged, or not an image format OpenCV reads)")
    if stored.dtype == np.uint8:
        peak = np.float32(255)
    elif stored.dtype == np.uint16:
        peak = np.float32(65535)
    else:
        raise ImageError(f"{path}: {stored.dtype} pixels; expected 8- or 16-bit images")
    if stored.ndim == 2:
        stored = stored[:, :, None]
    channels = stored.shape[2]
    if channels == 4:
        if stored[:, :, 3].min() < np.iinfo(stored.dtype).max:
            raise ImageError(f"{path}: has transparent pixels; flatten it onto a background first")
        stored = stored[:, :, :3]
    elif channels not in (1, 3):
        raise ImageError(f"{path}: {channels} channels; expected RGB, grayscale or opaque RGBA")
    rgb = np.repeat(stored, 3, axis=2) if channels == 1 else stored[:, :, ::-1]
    return np.ascontiguousarray(_apply_orientation(rgb, orientation)).astype(np.float32) / peak  # the protocol's /255


def check_image(path: Path | str) -> tuple[tuple[int, int] | None, str | None]:
    """((width, height), None) for a file `read_image` reads correctly, else (None, the problem). JPEGs are
    also decoded strictly (truncated or corrupted data is an error, not a warning)."""
    path = Path(path)
    try:
        with native_stderr_silenced():
            image = read_image(path)
            problem = _jpeg_problem(path) if _is_jpeg(path) else None
    except ImageError as e:
        return None, str(e).removeprefix(f"{path}: ")
    return (None, problem) if problem else ((image.shape[1], image.shape[0]), None)


def _is_jpeg(path: Path) -> bool:
    """By the content, not the name: a link named .jpg may hold a PNG (scripts/prepare_data.py names both images of
    a pair after the hazy one), and a JPEG may be named anything."""
    with open(path, "rb") as f:
        return f.read(3) == b"\xff\xd8\xff"


def _jpeg_problem(path: Path) -> str | None:
    """Decode a JPEG strictly with libjpeg-turbo (simplejpeg): its warnings about corrupt or missing data, which
    OpenCV only prints, become the problem. A valid but unusual chroma layout that TurboJPEG's API does not
    take is decoded fully by Pillow instead, which still catches truncation."""
    try:
        simplejpeg.decode_jpeg(path.read_bytes(), strict=True)
        return None
    except ValueError as e:
        message = " ".join(str(e).split())
        if "subsampling" not in message:
            return f"damaged or truncated JPEG ({message})"
    try:
        with Image.open(path) as image:
            image.load()
    except OSError as e:
        return f"damaged or truncated JPEG ({e})"
    return None


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """An RGB image in [0, 1] (H×W×3 array or 3×H×W tensor) as H×W×3 uint8, clipped and rounded to nearest."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_image(path: Path | str, image: np.ndarray | torch.Tensor) -> None:
    """Write an RGB image (uint8, or [0, 1] as to_uint8 takes it) as an 8-bit file."""
    rgb8 = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 else to_uint8(image)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not be written")


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 array in [0, 1] → 3×H×W float tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) * 2.0 - 1.0


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Network range [-1, 1] → metric range [0, 1], clamping first as the evaluation protocol does."""
    return x.clamp(-1.0, 1.0) * 0.5 + 0.5


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 1) -> torch.Tensor:
    """Reflect-pad B×C×H×W on the right and bottom so that H and W become multiples of `multiple`
    and at least `min_size`. Reflection needs the pad to be smaller than the side; images too small for
    that are padded by replication instead."""
    h, w = x.shape[-2:]
    pad_h = max(min_size, h + (-h) % multiple) - h
    pad_w = max(min_size, w + (-w) % multiple) - w
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def check_images(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    """(width, height) of every image, each decoded as `check_image` does; ImageError listing every problem
    when any is unusable — so that a bad file stops a script before its first photo, not in the middle."""
    sizes, problems = {}, []
    for path in paths:
        size, problem = check_image(path)
        if problem:
            problems.append(f"{path}: {problem}")
        sizes[path] = size
    if problems:
        raise ImageError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return sizes
