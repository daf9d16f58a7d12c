"""What the no-reference measures take, checked in one place for all five (FADE, PIQE, entropy, NIQE, BRISQUE), and
the error for a photo a measure has no value for.

A measure takes an H×W×3 RGB image or an H×W (or H×W×1) grey one, as uint8 or as float in [0, 1]. Anything else
(values outside [0, 1], NaN, another shape or type) is a ValueError naming the measure and the problem: a float
image of 0–255 would otherwise be read as all white and scored without a word.
"""
from __future__ import annotations

import numpy as np


class UndefinedMeasure(ValueError):
    """The measure has no value for this image (a flat photo has no texture to take statistics of; an image too
    small for the measure's patches); the message names the measure and says why."""


def rgb_image(image, measure: str) -> np.ndarray:
    """`image` as H×W×3 (grey repeated to three channels), uint8 or float in [0, 1] as given, checked."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{measure}: an image of shape {image.shape}; expected H×W×3 RGB or H×W grey")
    if image.size == 0:
        raise ValueError(f"{measure}: an empty image (shape {image.shape})")
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{measure}: {image.dtype} pixels; expected uint8, or float in [0, 1]")
    if np.isnan(image).any():
        raise ValueError(f"{measure}: the image holds NaN values")
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 1:
        raise ValueError(f"{measure}: float values outside [0, 1] (from {low:g} to {high:g}); give uint8, or float in "
                         f"[0, 1]")
    return image


def as_rgb8(image, measure: str) -> np.ndarray:
    """The checked image as H×W×3 uint8: uint8 unchanged, float in [0, 1] scaled by 255 and rounded."""
    image = rgb_image(image, measure)
    return image if image.dtype == np.uint8 else np.round(image * 255.0).astype(np.uint8)


def at_least(image: np.ndarray, height: int, width: int, measure: str) -> None:
    """UndefinedMeasure unless the image has at least `height` rows and `width` columns."""
    if image.shape[0] < height or image.shape[1] < width:
        raise UndefinedMeasure(f"{measure} needs at least {width}×{height} pixels (width × height), the image is "
                               f"{image.shape[1]}×{image.shape[0]}")
