"""Dehaze your own photos: a file, a folder or a glob, any resolution.

    python predict.py --checkpoint runs/reside6k/mixcl-s/best.pt photo.jpg
    python predict.py --checkpoint runs/reside6k/mixcl-s/best.pt "photos/**/*.jpg" --compare
    python predict.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s photos/ --tile 512 --amp fp16

Writes <out>/<stem>.png for every photo and, with --compare, <out>/comparisons/<stem>.jpg (hazy | output,
plus the ground truth when --gt names a folder holding an image of the same name). Photos too large to
dehaze whole go through overlapping tiles (utils/tiling.py): --tile auto (default) switches on an
out-of-memory error on CUDA and above --max-whole-pixels on the CPU; --tile N always tiles, --tile off never.
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.paired import DatasetError
from models import load_model
from utils.cli import run_reporting_user_errors
from utils.image import is_image_file, write_image
from utils.inference import AMP_DTYPES, MAX_WHOLE_PIXELS_CPU, Dehazer
from utils.pictures import side_by_side

Image.MAX_IMAGE_PIXELS = None  # large photos are what tiling is for


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns (quote them)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="this project's checkpoint, or an official one with --model")
    parser.add_argument("--model", help="model name; required for official checkpoints, read from this project's")
    parser.add_argument("--out", type=Path, help="output folder (default: results/predict/<checkpoint name>)")
    parser.add_argument("--label", help="the class to condition on, for MixCL checkpoints trained with the labels prior")
    parser.add_argument("--tile", default="auto", help='"auto", "off" or a tile size in pixels (default auto)')
    parser.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default 64)")
    parser.add_argument("--max-whole-pixels", type=int, default=MAX_WHOLE_PIXELS_CPU,
                        help=f"with --tile auto on the CPU, tile photos larger than this (default {MAX_WHOLE_PIXELS_CPU})")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu … (default: cuda when available)")
    parser.add_argument("--amp", choices=AMP_DTYPES, default="off", help="autocast dtype (default off: fp32)")
    parser.add_argument("--compare", action="store_true", help="also write side-by-side comparisons")
    parser.add_argument("--gt", type=Path, help="folder of ground-truth images (same names) to add to comparisons")
    args = parser.parse_args(argv)
    if args.tile not in ("auto", "off"):
        if not args.tile.isdigit():
            parser.error(f'--tile must be "auto", "off" or a size in pixels, got {args.tile!r}')
        args.tile = int(args.tile)
    return args


def find_images(inputs: list[str]) -> list[Path]:
    """Every image named by the inputs (files, folders — not recursive — and glob patterns), in order,
    without repeats; an input that names nothing is an error."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if is_image_file(p))
        elif path.is_file():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if is_image_file(p))
        if not matches:
            raise DatasetError(f"{item}: no such image, folder with images, or matching pattern")
        found += [p for p in matches if p not in found]
    return found


def check_images(paths: list[Path], gt: Path | None) -> None:
    """Every photo opens (header only), no two share an output name, and every named ground truth exists
    with the photo's size — checked before the first one is dehazed, with all problems listed."""
    problems, stems = [], {}
    for path in paths:
        if path.stem in stems:
            problems.append(f"{path}: its output would overwrite that of {stems[path.stem]} (same name)")
        stems[path.stem] = path
        try:
            with Image.open(path) as image:
                size = image.size
        except OSError as e:
            problems.append(f"{path}: cannot be read ({e})")
            continue
        if gt is not None:
            target = gt / path.name
            if not target.is_file():
                problems.append(f"{path}: no ground truth {target}")
                continue
            with Image.open(target) as image:
                if image.size != size:
                    problems.append(f"{target}: {image.size[0]}×{image.size[1]}, the photo is {size[0]}×{size[1]}")
    if problems:
        raise DatasetError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run(args: argparse.Namespace) -> list[Path]:
    paths = find_images(args.inputs)
    check_images(paths, args.gt)
    model = load_model(args.checkpoint, args.model)
    dehazer = Dehazer(model, device=args.device, amp=args.amp, label=args.label,
                      tile=None if args.tile == "off" else args.tile, overlap=args.overlap,
                      max_whole_pixels=args.max_whole_pixels, progress=True)
    out = args.out or Path("results") / "predict" / args.checkpoint.stem
    written, tiled = [], 0
    for path in tqdm(paths, desc="dehaze", unit="photo", dynamic_ncols=True):
        hazy = read_rgb(path)
        output = dehazer(hazy)
        tiled += dehazer.last_tiled
        written.append(out / f"{path.stem}.png")
        write_image(written[-1], output)
        if args.compare:
            images, captions = [hazy, output], ["hazy", model.model_name]
            if args.gt is not None:
                images, captions = images + [read_rgb(args.gt / path.name)], captions + ["ground truth"]
            write_image(out / "comparisons" / f"{path.stem}.jpg", side_by_side(images, captions))
    print(f"{len(written)} photo(s) dehazed by {model.model_name} on {dehazer.device}"
          f"{f', {tiled} in tiles' if tiled else ''}; written to {out}")
    return written


if __name__ == "__main__":
    run_reporting_user_errors(run, parse_args())
