"""What the web app (app.py) does with a photo, without Gradio, so that it is tested without a browser: read and check
an uploaded file, dehaze it through `Dehazer` (predict.py's path, tiles included), the language prior's class with
CLIP's probabilities, and FADE of input and output as evaluate_real.py computes it (on the 8-bit images).

    models = load_app_models(["runs/demo/mixcl-t/best.pt"])
    photo = read_photo("upload/photo.jpg", "photo.jpg")         # ImageError: one line naming the photo
    result = dehaze_photo(models["mixcl-t"], photo, label=None)  # None: CLIP's class, as `dehaze` picks it
    print(report(result))

An upload is read as predict.py reads a file (utils.image.read_image: EXIF orientation, 16-bit precision kept,
opaque alpha dropped, transparency refused), after two checks: its header names an image of at most `max_pixels`
(before any pixel is decoded), and it decodes strictly (a damaged JPEG is refused, not dehazed as garbage).
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from metrics import fade
from metrics.inputs import UndefinedMeasure
from models import load_model
from models.weights import MissingWeightsError
from prior import PriorError, load_clip
from utils.cli import MAX_APP_PIXELS, MAX_WHOLE_PIXELS_CPU, run_name
from utils.image import ImageError, check_image, read_image, to_uint8, write_image

from .dehazer import Dehazer

CLIP_CHOICE = "CLIP's class"


@dataclass
class Photo:
    name: str            # the file name the user gave
    pixels: np.ndarray   # H×W×3 float32 RGB in [0, 1], as utils.image.read_image gives it
    notes: list[str] = field(default_factory=list)


def read_photo(path: Path | str, name: str, max_pixels: int = MAX_APP_PIXELS) -> Photo:
    """The uploaded file at `path`, which the user calls `name`; an ImageError naming it when it is not an image,
    has more than `max_pixels` (read from its header), is damaged, or has transparent pixels."""
    try:
        with Image.open(path) as header:  # reads the header only
            (width, height), mode = header.size, header.mode
            transparency = "transparency" in header.info
    except (UnidentifiedImageError, OSError):
        raise ImageError(f"{name}: not an image this page reads (PNG, JPEG, BMP, TIFF or WebP)") from None
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}×{height} pixels, more than the {max_pixels:,} this page takes "
                         f"(app.py --max-pixels); predict.py dehazes any size")
    _, problem = check_image(path)
    if problem:
        raise ImageError(f"{name}: {problem}")
    pixels = read_image(path)
    notes = []
    if mode.endswith("A") or transparency:
        notes.append("its alpha channel is fully opaque and was dropped")
    if not np.array_equal(to_uint8(pixels) / np.float32(255), pixels):
        notes.append("it has more than 8 bits per channel: the network saw them all; the result is 8-bit")
    return Photo(name, pixels, notes)


class AppModel:
    """A checkpoint loaded once for the page: its network, a Dehazer per prior class (made on first use), and CLIP
    for a network whose prior uses it. Without CLIP's weights on this machine such a network takes a given class,
    as `predict.py --label` does."""

    def __init__(self, checkpoint: Path | str, model_name: str | None = None, device: str | None = None,
                 tile: int | str | None = "auto", overlap: int = 64, max_whole_pixels: int = MAX_WHOLE_PIXELS_CPU):
        self.name = run_name(Path(checkpoint))
        self.network = load_model(checkpoint, model_name)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.options = {"tile": tile, "overlap": overlap, "max_whole_pixels": max_whole_pixels}
        self.prior = self.network.prior if self.network.takes_prior else None
        self.classes = tuple(self.prior.classes) if self.prior else ()
        self.clip, self.clip_missing = None, None
        if self.prior and self.prior.mode != "labels":
            try:
                self.clip = load_clip(self.prior, self.device)
            except MissingWeightsError as e:
                if self.prior.text_features is None:
                    raise  # nothing to condition the network on
                self.clip_missing = str(e).split(". ")[0].rstrip(".")  # its first sentence: what is missing
        self._dehazers: dict[str | None, Dehazer] = {}

    @property
    def needs_class(self) -> bool:
        """Whether each photo's class must be given: a `labels` prior, or CLIP's weights are not here."""
        return bool(self.prior) and self.clip is None

    def class_choices(self) -> list[str]:
        """What the page offers for the prior: CLIP's class (where CLIP is here) and each class; none without prior."""
        return ([] if self.needs_class or not self.prior else [CLIP_CHOICE]) + list(self.classes)

    def dehazer(self, label: str | None) -> Dehazer:
        if label not in self._dehazers:
            self._dehazers[label] = Dehazer(self.network, self.device, label=label, progress=True, **self.options)
        return self._dehazers[label]

    def probabilities(self, pixels: np.ndarray) -> dict[str, float] | None:
        """CLIP's class probabilities of a photo, of the very image Dehazer hands CLIP; None without CLIP."""
        if self.clip is None:
            return None
        return dict(zip(self.classes, self.clip.probabilities([Image.fromarray(to_uint8(pixels))])[0].tolist()))


def load_app_models(checkpoints: Sequence[Path | str], model_name: str | None = None, **options) -> dict[str, AppModel]:
    """Every checkpoint, loaded once, by a distinct name (its run name, else its path)."""
    models = [AppModel(checkpoint, model_name, **options) for checkpoint in checkpoints]
    names = [m.name for m in models]
    for model, checkpoint in zip(models, checkpoints):
        if names.count(model.name) > 1:
            model.name = str(checkpoint)
    return {model.name: model for model in models}


@dataclass
class Result:
    hazy: np.ndarray                     # H×W×3 uint8: the photo as the network saw it, rounded to 8 bits
    clear: np.ndarray                    # H×W×3 uint8: the network's output
    model: str
    prior_mode: str | None               # the network's prior (prior/__init__.py), None without one
    label: str | None                    # the class given; None: CLIP's (or no prior)
    probabilities: dict[str, float] | None
    fade_hazy: float | None              # None: FADE has no value for the image (too small, flat): see notes
    fade_clear: float | None
    tiled: bool
    seconds: float
    notes: list[str]


def fade_of(image: np.ndarray, notes: list[str]) -> float | None:
    """FADE of the image, or None with the reason added to `notes` where FADE has no value (too small, flat)."""
    try:
        return fade(image)
    except UndefinedMeasure as e:
        if str(e) not in notes:
            notes.append(str(e))
        return None


def dehaze_photo(model: AppModel, photo: Photo, label: str | None = None,
                 stage: Callable[[str], None] = lambda what: None) -> Result:
    """Dehaze `photo` with `model`, conditioned (MixCL) on `label`, else on CLIP's class as `dehaze` would; `stage`
    hears what is being done (for a progress display)."""
    if model.prior and label is None and model.needs_class:
        why = model.clip_missing or "it was trained with known classes (the `labels` prior)"
        raise PriorError(f"{model.name} needs the photo's class, one of {list(model.classes)}: {why}")
    if label is not None and label not in model.classes:
        raise PriorError(f"{label!r} is not a class of {model.name}'s prior ({list(model.classes) or 'it has none'})")
    stage("CLIP's class")
    probabilities = model.probabilities(photo.pixels)
    stage("dehazing")
    start = time.perf_counter()
    dehazer = model.dehazer(label)
    clear = to_uint8(dehazer(photo.pixels, photo.name))
    seconds = time.perf_counter() - start
    stage("FADE")
    hazy = to_uint8(photo.pixels)
    notes = list(photo.notes)
    fade_hazy, fade_clear = fade_of(hazy, notes), fade_of(clear, notes)
    return Result(hazy, clear, model.name, model.prior.mode if model.prior else None, label, probabilities,
                  fade_hazy, fade_clear, dehazer.last_tiled, seconds, notes)


def report(result: Result) -> str:
    """The result in a few lines of Markdown: FADE, the prior's class, how it ran, notes."""
    lines = []
    if result.fade_hazy is not None or result.fade_clear is not None:
        shown = [f"{value:.3f}" if value is not None else "none" for value in (result.fade_hazy, result.fade_clear)]
        lines.append(f"**FADE** (fog density, lower is clearer): input {shown[0]} → output {shown[1]}")
    if result.label is not None:
        lines.append(f"**Prior class**: {result.label} (given)")
    elif result.probabilities:
        best = max(result.probabilities, key=result.probabilities.get)
        mixed = ", mixed with the others by these probabilities" if result.prior_mode == "clip-soft" else ""
        lines.append(f"**Prior class**: {best} (CLIP's{mixed})")
    height, width = result.clear.shape[:2]
    lines.append(f"{result.model}, {width}×{height}{' in tiles' if result.tiled else ''}, {result.seconds:.1f} s")
    lines += [f"Note: {note}." for note in result.notes]
    return "  \n".join(lines)


class ResultFile:
    """The latest result as a PNG for the page's download: one file at a time in a folder of its own, removed when
    the next is written (the page serves its own copy) and when the process ends."""

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="mixcl-app-")
        self._last: Path | None = None

    def write(self, result: Result, photo_name: str) -> Path:
        if self._last is not None:
            self._last.unlink(missing_ok=True)
        self._last = Path(self._folder.name) / f"{Path(photo_name).stem}-{result.model.replace('/', '-')}.png"
        write_image(self._last, result.clear)
        return self._last
