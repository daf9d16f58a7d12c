"""Dehaze real hazy photos (no ground truth, any sizes) and score input and output by the no-reference measures
real-world dehazing papers report: FADE (fog density), PIQE, NIQE and BRISQUE (lower = better) and entropy
(higher = more detail).

    python evaluate_real.py --checkpoint runs/demo/mixcl-t/best.pt photos/ --label outdoor --compare
    python evaluate_real.py --checkpoint runs/reside6k/ka-net/best.pt data/RTTS --max-side 1024

Writes to --out (default results/<run>/real): outputs/<stem>.png (the dehazed photos), per_image.csv,
summary.json and, with --compare, comparisons/<stem>.jpg (input | output, scores printed under each). MixCL
checkpoints get their language prior as they were trained: CLIP on each photo, or the class given by --label
(one for all) or --labels (per photo). Every photo is checked before the first is dehazed.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.cli import (
    UserError,
    add_inference_arguments,
    add_model_arguments,
    inference_options,
    output_paths,
    run_name,
    run_reporting_user_errors,
    script_parser,
)
from utils.paths import OutputFolder


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("inputs", nargs="+", help="hazy photos: files, folders or glob patterns (quote them)")
    add_model_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--max-side", type=int, help="shrink larger photos to this longest side first (speed)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<run>/real)")
    parser.add_argument("--compare", action="store_true", help="also write input | output comparisons with their scores")
    return parser.parse_args(argv)


def too_small_for_niqe(sizes: dict[Path, tuple[int, int]], max_side: int | None, block: int) -> None:
    """NIQE needs two blocks by one: checked for every photo before the first one is dehazed."""
    problems = []
    for path, (width, height) in sizes.items():
        scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
        short, long = sorted((round(width * scale), round(height * scale)))
        if short < block or long < 2 * block:
            problems.append(f"{path}: {width}×{height}{' after --max-side' if scale < 1 else ''} is too small for NIQE "
                            f"(needs {2 * block}×{block})")
    if problems:
        raise UserError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))


def shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return image


def caption(title: str, scores: dict, labels: dict[str, str]) -> str:
    """Lines under a panel, narrow enough for a small photo: the title and two measures, then two per line."""
    parts = [f"{labels[name]} {value:.2f}" for name, value in scores.items()]
    return "\n".join("  ".join(line) for line in ([title, *parts[:2]], parts[2:4], parts[4:]) if line)


def run(args: argparse.Namespace) -> dict:
    with OutputFolder(args.out or Path("results") / run_name(args.checkpoint) / "real") as out:
        return evaluate(args, out)  # this run's folder alone, and writable, before any work


def evaluate(args: argparse.Namespace, out: Path) -> dict:
    # PyTorch loads here, after the arguments are parsed: --help answers at once
    from inference import Dehazer
    from metrics.no_reference import NIQE_BLOCK
    from metrics.real_haze import MEASURES, score_photo
    from models import load_model
    from utils.cpu_memory import keep_freed_memory
    from utils.image import check_images, find_images, read_image, to_uint8, write_image
    from utils.pictures import side_by_side

    paths = find_images(args.inputs)
    outputs = output_paths(paths, out / "outputs", ".png")
    comparisons = output_paths(paths, out / "comparisons", ".jpg") if args.compare else {}
    too_small_for_niqe(check_images(paths), args.max_side, NIQE_BLOCK)  # before the first photo is dehazed
    model = load_model(args.checkpoint, args.model)
    dehazer = Dehazer(model, **inference_options(args), label=args.label, labels=args.labels)
    if dehazer.device.type == "cpu" and not args.no_keep_freed_memory:
        keep_freed_memory()  # process-wide: glibc keeps freed memory for the next photo (faster; utils/cpu_memory.py)
    labels = {name: measure.label for name, measure in MEASURES.items()}
    rows = []
    for path in tqdm(paths, desc="dehaze", dynamic_ncols=True):
        hazy8 = to_uint8(shrink(read_image(path), args.max_side))
        output8 = dehazer(hazy8, path.name)
        hazy_scores, output_scores = score_photo(hazy8), score_photo(output8)
        write_image(outputs[path], output8)
        if args.compare:
            write_image(comparisons[path], side_by_side([hazy8, output8], [caption("input", hazy_scores, labels),
                                                                            caption("output", output_scores, labels)]))
        rows.append({"name": path.name, "width": hazy8.shape[1], "height": hazy8.shape[0],
                     **{f"input_{k}": v for k, v in hazy_scores.items()},
                     **{f"output_{k}": v for k, v in output_scores.items()}})
    summary = {"model": model.model_name, "checkpoint": str(args.checkpoint), "precision": dehazer.precision,
               "images": len(rows)}
    for name, measure in MEASURES.items():
        summary[f"input_{name}"] = sum(r[f"input_{name}"] for r in rows) / len(rows)
        summary[f"output_{name}"] = sum(r[f"output_{name}"] for r in rows) / len(rows)
        summary[f"{name}_improved"] = sum(measure.improves(r[f"input_{name}"], r[f"output_{name}"]) for r in rows)
    report(rows, summary, out, labels)
    return summary


def report(rows: list[dict], summary: dict, out: Path, labels: dict[str, str]) -> None:
    """per_image.csv, summary.json and the printed summary."""
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['model']} on {summary['images']} photos, precision {summary['precision']}")
    for name, label in labels.items():
        print(f"  {label:8s} input {summary[f'input_{name}']:.3f}  output {summary[f'output_{name}']:.3f}"
              f"  (better on {summary[f'{name}_improved']} of {summary['images']})")
    print(f"  written to {out}")


def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    run_reporting_user_errors(main)
