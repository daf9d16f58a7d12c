"""Dehaze a folder of real hazy photos (no ground truth, any sizes) and judge input and output by
no-reference quality: NIQE and BRISQUE (lower = more natural) and dark-channel haze density (lower = less
haze).

    python evaluate_real.py --checkpoint runs/demo/mixcl-t/best.pt --images ../shared/data/real_hazy --label outdoor
    python evaluate_real.py --checkpoint runs/reside6k/ka-net/best.pt --images data/RTTS --max-side 1024

Writes to --out: outputs/<stem>.png (the dehazed photos), comparisons/<stem>.jpg (input | output, scores
printed under each), per_image.csv, summary.json. MixCL checkpoints get their language prior as they were
trained: CLIP on each photo (clip, clip-soft), or the class given by --label (labels).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.paired import DatasetError
from models import load_model
from utils.cli import run_reporting_user_errors
from utils.image import is_image_file, read_image, to_uint8, write_image
from utils.inference import Dehazer
from utils.pictures import side_by_side
from utils.no_reference import NIQE_BLOCK, brisque, haze_density, niqe

SCORES = {"niqe": niqe, "brisque": brisque, "haze_density": haze_density}
LABELS = {"niqe": "NIQE", "brisque": "BRISQUE", "haze_density": "haze density"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--model", help="model name, for official checkpoints")
    parser.add_argument("--images", type=Path, required=True, help="folder of hazy photos")
    parser.add_argument("--out", type=Path, help="output folder (default: results/real/<checkpoint name>)")
    parser.add_argument("--label", help="the class to condition on, for MixCL checkpoints trained with the labels prior")
    parser.add_argument("--max-side", type=int, help="shrink larger photos to this longest side first (speed)")
    return parser.parse_args(argv)


def check_photos(paths: list[Path], max_side: int | None) -> None:
    """Every photo opens and is large enough for NIQE (two 96×96 blocks) — checked before the first one is
    dehazed, with all problems listed."""
    problems = []
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except OSError as e:
            problems.append(f"{path}: cannot be read ({e})")
            continue
        scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
        short, long = sorted((round(width * scale), round(height * scale)))
        if short < NIQE_BLOCK or long < 2 * NIQE_BLOCK:
            problems.append(f"{path}: {width}×{height}{' after --max-side' if scale < 1 else ''} is too small for NIQE "
                            f"(needs {2 * NIQE_BLOCK}×{NIQE_BLOCK})")
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in {paths[0].parent}:\n  " + "\n  ".join(problems))


def read_photo(path: Path, max_side: int | None) -> np.ndarray:
    try:
        image = read_image(path)
    except OSError as e:  # the message names the file
        raise DatasetError(str(e)) from None
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def caption(title: str, scores: dict) -> str:
    return "  ".join([title] + [f"{LABELS[name]} {value:.2f}" for name, value in scores.items()])


def run(args: argparse.Namespace) -> dict:
    if not args.images.is_dir():
        raise DatasetError(f"{args.images}: no such folder")
    paths = sorted(p for p in args.images.iterdir() if is_image_file(p))
    if not paths:
        raise DatasetError(f"{args.images}: no images")
    check_photos(paths, args.max_side)
    model = load_model(args.checkpoint, args.model)
    dehazer = Dehazer(model, label=args.label)
    out = args.out or Path("results") / "real" / args.checkpoint.stem
    rows = []
    for path in tqdm(paths, desc="dehaze", dynamic_ncols=True):
        hazy = read_photo(path, args.max_side)
        hazy8 = to_uint8(hazy)
        output8 = dehazer(hazy8)
        hazy_scores = {name: score(hazy8) for name, score in SCORES.items()}
        output_scores = {name: score(output8) for name, score in SCORES.items()}
        write_image(out / "outputs" / f"{path.stem}.png", output8)
        write_image(out / "comparisons" / f"{path.stem}.jpg",
                    side_by_side([hazy8, output8], [caption("input", hazy_scores), caption("output", output_scores)]))
        rows.append({"name": path.name, "width": hazy8.shape[1], "height": hazy8.shape[0],
                     **{f"input_{k}": v for k, v in hazy_scores.items()},
                     **{f"output_{k}": v for k, v in output_scores.items()}})

    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"model": model.model_name, "checkpoint": str(args.checkpoint), "images": len(rows)}
    for name in SCORES:
        summary[f"input_{name}"] = float(np.mean([r[f"input_{name}"] for r in rows]))
        summary[f"output_{name}"] = float(np.mean([r[f"output_{name}"] for r in rows]))
        summary[f"{name}_lowered"] = sum(r[f"output_{name}"] < r[f"input_{name}"] for r in rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['model']} on {len(rows)} photos of {args.images}")
    for name in SCORES:
        print(f"  {LABELS[name]:13s} input {summary[f'input_{name}']:.3f}  output {summary[f'output_{name}']:.3f}"
              f"  (lower on {summary[f'{name}_lowered']})")
    print(f"  written to {out}")
    return summary


if __name__ == "__main__":
    run_reporting_user_errors(run, parse_args())
