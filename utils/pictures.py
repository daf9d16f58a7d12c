"""Pictures for people: captioned side-by-side comparisons (hazy | output | ground truth)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CAPTION_HEIGHT = 28
GAP = 8


def captioned(image: np.ndarray, caption: str, lines: int = 1) -> np.ndarray:
    """An H×W×3 uint8 RGB image with a white strip underneath holding `caption`, one strip height per line ("\n"
    separates them; `lines`: at least this many, so that captioned panels share one height)."""
    rows = caption.split("\n")
    strip = np.full((CAPTION_HEIGHT * max(lines, len(rows)), image.shape[1], 3), 255, np.uint8)
    for i, row in enumerate(rows):
        cv2.putText(strip, row, (6, 20 + i * CAPTION_HEIGHT), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([image, strip])


def side_by_side(images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
    """Same-sized uint8 RGB images left to right, each captioned, separated by white gaps."""
    if len({image.shape for image in images}) != 1:
        raise ValueError(f"images to compare must share one shape, got {[image.shape for image in images]}")
    lines = max(caption.count("\n") + 1 for caption in captions)
    panels = [captioned(image, caption, lines) for image, caption in zip(images, captions, strict=True)]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)

