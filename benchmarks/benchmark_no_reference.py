"""Time of the five no-reference measures evaluate_real.py reports (FADE, PIQE, entropy, NIQE, BRISQUE) on one photo
scaled to a given size (default 1 megapixel), each alone and all together, median of several rounds, one process.

    python benchmarks/benchmark_no_reference.py                    # scikit-image's coffee photo, scaled to 1 MP
    python benchmarks/benchmark_no_reference.py photo.jpg --megapixels 2
"""
from __future__ import annotations

import math
import statistics
import time

import cv2
import numpy as np

from benchmarks.benchmark_models import machine
from metrics.real_haze import MEASURES, score_photo
from utils.cli import MAX_PIXELS, number, script_parser, whole_number
from utils.image import read_image, to_uint8


def photo_of_size(path: str | None, megapixels: float) -> np.ndarray:
    """The photo (default: scikit-image's coffee) resized by area to about `megapixels`, as uint8 RGB."""
    if path is None:
        import skimage.data  # noqa: PLC0415 — only for the default photo
        image = skimage.data.coffee()
    else:
        image = to_uint8(read_image(path))
    scale = math.sqrt(megapixels * 1e6 / (image.shape[0] * image.shape[1]))
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)


def median_time(function, image: np.ndarray, rounds: int) -> float:
    function(image)  # model files and caches load once
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function(image)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = script_parser(__doc__)
    parser.add_argument("photo", nargs="?", help="a photo (default: scikit-image's coffee)")
    parser.add_argument("--megapixels", type=number(0, MAX_PIXELS / 1e6), default=1.0)
    parser.add_argument("--rounds", type=whole_number(1, 1000), default=5)
    args = parser.parse_args(argv)
    image = photo_of_size(args.photo, args.megapixels)
    seconds = {name: median_time(measure.score, image, args.rounds) for name, measure in MEASURES.items()}
    seconds["all five"] = median_time(score_photo, image, args.rounds)
    print(f"{image.shape[1]}×{image.shape[0]} ({image.shape[0] * image.shape[1] / 1e6:.2f} MP), median of {args.rounds} "
          f"rounds, {machine()}\n\n| measure | seconds |\n|---|---|")
    for name, value in seconds.items():
        print(f"| {MEASURES[name].label if name in MEASURES else name} | {value:.3f} |")
    return seconds


if __name__ == "__main__":
    main()
