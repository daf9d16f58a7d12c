"""The no-reference measures real-world dehazing papers report for photos without ground truth (KA-Net's evaluation
on RTTS, URHI and Fattal's photos among them), in one table: FADE, PIQE, entropy, NIQE and BRISQUE."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .fade import fade
from .no_reference import brisque, entropy, niqe, piqe


@dataclass(frozen=True)
class Measure:
    label: str
    score: Callable[[np.ndarray], float]
    lower_is_better: bool

    def improves(self, before: float, after: float) -> bool:
        return after < before if self.lower_is_better else after > before


MEASURES = {
    "fade": Measure("FADE", fade, lower_is_better=True),            # fog density
    "piqe": Measure("PIQE", piqe, lower_is_better=True),            # perceptual distortion, 0–100
    "entropy": Measure("entropy", entropy, lower_is_better=False),  # bits of detail in the grey histogram
    "niqe": Measure("NIQE", niqe, lower_is_better=True),            # distance to natural-scene statistics
    "brisque": Measure("BRISQUE", brisque, lower_is_better=True),
}


def score_photo(image: np.ndarray) -> dict[str, float]:
    """Every measure of one H×W×3 uint8 RGB photo."""
    return {name: measure.score(image) for name, measure in MEASURES.items()}
