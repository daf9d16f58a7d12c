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
import torch
from PIL import Image
from tqdm import tqdm

from datasets.prior import image_prior
from datasets.paired import DatasetError
from models import load_model
from models.clip_prior import ClipPrior
from utils.cli import run_reporting_user_errors
from utils.config import ConfigError
from utils.evaluation import dehaze
from utils.image import is_image_file, read_image, to_tensor, to_unit_range, write_image
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


def prior_function(model, label: str | None, device: torch.device):
    """image (PIL) → the prior tensor the model takes, or None for models without one."""
    if not getattr(model, "takes_prior", False):
        return None
    prior = getattr(model, "prior_config", None) or {"mode": "clip"}
    if prior["mode"] == "labels":
        classes = prior["classes"]
        if label not in classes:
            raise ConfigError(f"this checkpoint was trained with the `labels` prior: pass --label, one of {classes}")
        return lambda image: torch.tensor([classes.index(label)], device=device)
    clip = ClipPrior.load(prior["clip_model"], prior["clip_pretrained"], prior["classes"], prior["template"], device)
    return lambda image: image_prior(clip, image, prior["mode"]).to(device)


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


def comparison(hazy: np.ndarray, output: np.ndarray, hazy_scores: dict, output_scores: dict) -> np.ndarray:
    """Input | output side by side (8-bit RGB), each with its scores in a strip underneath."""
    def captioned(image, title, scores):
        strip = np.full((28, image.shape[1], 3), 255, np.uint8)
        text = "  ".join([title] + [f"{LABELS[name]} {value:.2f}" for name, value in scores.items()])
        cv2.putText(strip, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        return np.concatenate([image, strip])
    gap = np.full((hazy.shape[0] + 28, 8, 3), 255, np.uint8)
    return np.concatenate([captioned(hazy, "input", hazy_scores), gap, captioned(output, "output", output_scores)], axis=1)


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.images.is_dir():
        raise DatasetError(f"{args.images}: no such folder")
    paths = sorted(p for p in args.images.iterdir() if is_image_file(p))
    if not paths:
        raise DatasetError(f"{args.images}: no images")
    check_photos(paths, args.max_side)
    model = load_model(args.checkpoint, args.model).to(device)
    prior_of = prior_function(model, args.label, device)
    out = args.out or Path("results") / "real" / args.checkpoint.stem
    rows = []
    for path in tqdm(paths, desc="dehaze", dynamic_ncols=True):
        hazy = read_photo(path, args.max_side)
        hazy8 = np.round(hazy * 255).astype(np.uint8)
        inputs = (to_tensor(hazy)[None].to(device),)
        if prior_of is not None:
            inputs += (prior_of(Image.fromarray(hazy8)),)
        output8 = np.round(to_unit_range(dehaze(model, inputs))[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        hazy_scores = {name: score(hazy8) for name, score in SCORES.items()}
        output_scores = {name: score(output8) for name, score in SCORES.items()}
        write_image(out / "outputs" / f"{path.stem}.png", output8 / 255.0)
        write_image(out / "comparisons" / f"{path.stem}.jpg", comparison(hazy8, output8, hazy_scores, output_scores) / 255.0)
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
