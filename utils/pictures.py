"""Pictures for people: captioned side-by-side comparisons (hazy | output | ground truth)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CAPTION_HEIGHT = 28
GAP = 8


def captioned(image: np.ndarray, caption: str) -> np.ndarray:
    """An H×W×3 uint8 RGB image with a white strip underneath holding `caption`."""
    strip = np.full((CAPTION_HEIGHT, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, caption, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([image, strip])


def side_by_side(images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
    """Same-sized uint8 RGB images left to right, each captioned, separated by white gaps."""
    if len({image.shape for image in images}) != 1:
        raise ValueError(f"images to compare must share one shape, got {[image.shape for image in images]}")
    panels = [captioned(image, caption) for image, caption in zip(images, captions, strict=True)]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)

