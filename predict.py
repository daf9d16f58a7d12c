"""Dehaze your own photos: files, folders or globs, any resolution.

    python predict.py --checkpoint runs/reside6k/mixcl-s/best.pt photo.jpg
    python predict.py --checkpoint runs/reside6k/mixcl-s/best.pt "photos/**/*.jpg" --compare
    python predict.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s photos/ --tile 512 --amp fp16

Writes <out>/<stem>.png for every photo (default out: results/<run>/predict) and, with --compare,
<out>/comparisons/<stem>.jpg (hazy | output, plus the ground truth when --gt names a folder holding an image of
the same name). Photos too large to dehaze whole go through overlapping tiles (inference/tiling.py): --tile auto
(default) switches on an out-of-memory error on CUDA and above --max-whole-pixels on the CPU; --tile N always
tiles, --tile off never. Every photo is checked before the first is dehazed; no output overwrites a photo or
another output.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from utils.cli import (
    MAX_PIXELS,
    MAX_WHOLE_PIXELS_CPU,
    UserError,
    add_inference_arguments,
    add_model_arguments,
    inference_options,
    output_paths,
    run_name,
    run_reporting_user_errors,
    script_parser,
    whole_number,
)
from utils.paths import OutputFolder


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns (quote them)")
    add_model_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--max-whole-pixels", type=whole_number(1, MAX_PIXELS), default=MAX_WHOLE_PIXELS_CPU,
                        help=f"with --tile auto on the CPU, tile photos larger than this (default {MAX_WHOLE_PIXELS_CPU:,})")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<run>/predict)")
    parser.add_argument("--compare", action="store_true", help="also write side-by-side comparisons")
    parser.add_argument("--gt", type=Path, help="folder of ground-truth images (same names) to add to comparisons")
    return parser.parse_args(argv)


def check_ground_truth(sizes: dict[Path, tuple[int, int]], gt_sizes: dict[Path, tuple[int, int]]) -> None:
    """Every ground truth has its photo's size."""
    problems = [f"{target}: {target_size[0]}×{target_size[1]}, the photo is {size[0]}×{size[1]}"
                for (path, size), (target, target_size) in zip(sizes.items(), gt_sizes.items()) if size != target_size]
    if problems:
        raise UserError(f"{len(problems)} ground truth(s) of another size:\n  " + "\n  ".join(problems))


def run(args: argparse.Namespace) -> list[Path]:
    with OutputFolder(args.out or Path("results") / run_name(args.checkpoint) / "predict") as out:
        return predict(args, out)  # this run's folder alone, and writable, before any work


def predict(args: argparse.Namespace, out: Path) -> list[Path]:
    # PyTorch loads here, after the arguments are parsed: --help answers at once
    from inference import Dehazer
    from models import load_model
    from utils.cpu_memory import keep_freed_memory
    from utils.image import check_images, find_images, read_image, to_uint8, write_image
    from utils.pictures import side_by_side

    options = inference_options(args)
    paths = find_images(args.inputs)
    outputs = output_paths(paths, out, ".png")
    comparisons = output_paths(paths, out / "comparisons", ".jpg") if args.compare else {}
    sizes = check_images(paths)  # every photo (and ground truth) decodes, before the first is dehazed
    if args.gt is not None:
        check_ground_truth(sizes, check_images([args.gt / path.name for path in paths]))
    model = load_model(args.checkpoint, args.model)
    dehazer = Dehazer(model, **options, label=args.label, labels=args.labels,
                      max_whole_pixels=args.max_whole_pixels, progress=True)
    if dehazer.device.type == "cpu" and not args.no_keep_freed_memory:
        keep_freed_memory()  # process-wide: glibc keeps freed memory for the next photo (faster; utils/cpu_memory.py)
    tiled = 0
    for path in tqdm(paths, desc="dehaze", unit="photo", dynamic_ncols=True):
        hazy = read_image(path)
        output = dehazer(hazy, path.name)
        tiled += dehazer.last_tiled
        write_image(outputs[path], output)
        if args.compare:
            images, captions = [to_uint8(hazy), to_uint8(output)], ["hazy", model.model_name]
            if args.gt is not None:
                images, captions = images + [to_uint8(read_image(args.gt / path.name))], captions + ["ground truth"]
            write_image(comparisons[path], side_by_side(images, captions))
    print(f"{len(paths)} photo(s) dehazed by {model.model_name} on {dehazer.device} in {dehazer.precision}"
          f"{f', {tiled} in tiles' if tiled else ''}; written to {out}")
    return list(outputs.values())


def main(argv=None) -> list[Path]:
    return run(parse_args(argv))


if __name__ == "__main__":
    run_reporting_user_errors(main)
