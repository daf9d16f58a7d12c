"""The no-reference measures real-world dehazing papers report for photos without ground truth (KA-Net's evaluation
on RTTS, URHI and Fattal's photos among them), in one table: FADE, PIQE, entropy, NIQE and BRISQUE."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.rows import read_rows

from .fade import fade
from .inputs import UndefinedMeasure
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


def score_photo(image: np.ndarray) -> tuple[dict[str, float | None], dict[str, str]]:
    """(every measure of one photo, why each measure that has no value for it is undefined): an undefined measure
    scores None (e.g. NIQE of a flat photo)."""
    scores, undefined = {}, {}
    for name, measure in MEASURES.items():
        try:
            scores[name] = measure.score(image)
        except UndefinedMeasure as e:
            scores[name], undefined[name] = None, str(e)
    return scores, undefined


# per_image.csv of evaluate_real.py: a photo, its dehazed file in outputs/, the size scored, each measure of input and
# output (empty where undefined) and why the empty ones are undefined
SCORE_FIELDS = ["name", "dehazed", "width", "height", *(f"{side}_{name}" for side in ("input", "output") for name in MEASURES),
                "undefined"]


def score_row(name: str, dehazed: str, image: np.ndarray, scores: dict, output_scores: dict, undefined: list[str]) -> dict:
    """One photo's row of SCORE_FIELDS (None for an undefined measure: an empty cell in the file)."""
    return {"name": name, "dehazed": dehazed, "width": image.shape[1], "height": image.shape[0],
            **{f"input_{k}": v for k, v in scores.items()}, **{f"output_{k}": v for k, v in output_scores.items()},
            "undefined": "; ".join(undefined)}


def read_score_rows(path: Path) -> dict[str, dict]:
    """dehazed file name → row of a per_image.csv written with SCORE_FIELDS, scores as floats (None where empty)."""
    rows = {}
    for row in read_rows(path, SCORE_FIELDS):
        scores = {key: float(value) if value else None for key, value in row.items() if key.startswith(("input_", "output_"))}
        rows[row["dehazed"]] = row | scores | {"width": int(row["width"]), "height": int(row["height"])}
    return rows
