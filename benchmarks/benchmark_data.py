"""Cost of reading one training sample (JPEG/PNG decode with OpenCV, crop, flip, to tensor), to size
`data.num_workers` against the training step.

    python benchmarks/benchmark_data.py data/RESIDE-6K/test     # any folder with GT/ and hazy/

A DataLoader with N workers delivers about N × (1 / seconds per sample) samples per second; a step that
consumes B samples in T seconds needs N ≥ B / (T × samples per second per worker) to keep the GPU fed.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from datasets import PairedAugment, PairedImageDataset, validate_paired_folder
from utils.cli import MAX_SIDE, script_parser, whole_number
from utils.image import read_image


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--crop", type=whole_number(1, MAX_SIDE), default=256)
    parser.add_argument("--rounds", type=whole_number(1, 1000), default=5)
    args = parser.parse_args(argv)
    names = validate_paired_folder(args.folder, min_size=args.crop)
    dataset = PairedImageDataset(args.folder, names, "train", PairedAugment(args.crop))

    def per_item(function) -> float:
        rounds = []
        for r in range(args.rounds):
            started = time.perf_counter()
            for i in range(len(names)):
                function(i, r)
            rounds.append((time.perf_counter() - started) / len(names))
        return statistics.median(rounds)

    decode = per_item(lambda i, r: read_image(args.folder / "hazy" / names[i]))
    sample = per_item(lambda i, r: dataset[(i, r)])
    print(f"{len(names)} pairs from {args.folder}, crop {args.crop}, median of {args.rounds} rounds, one process\n")
    print("| work | ms per item | items/s per worker |")
    print("|---|---|---|")
    print(f"| decode one image (cv2.imread, BGR→RGB, /255) | {decode * 1000:.1f} | {1 / decode:.0f} |")
    print(f"| one training sample (2 decodes, crop, flip, to tensor) | {sample * 1000:.1f} | {1 / sample:.0f} |")


if __name__ == "__main__":
    main()
