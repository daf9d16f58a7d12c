"""Tiled against whole-image inference on real photos: agreement (PSNR of the tiled output against the whole
image's) and time, for each source of the tiles' image-wide statistics (inference/tiling.py).

    python benchmarks/benchmark_tiling.py --checkpoint runs/demo/mixcl-t/best.pt --label outdoor path/to/hazy_photos/

Photos larger than --max-side are shrunk first, so that the whole image fits. The network runs as Dehazer runs
it (channels-last on the CPU).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
import torch
from PIL import Image

from inference import Dehazer
from inference.tiling import tile_layout, tiled_forward
from metrics import psnr
from models import load_model
from utils.cli import MAX_SIDE, script_parser, whole_number
from utils.image import find_images, pad_to_multiple, read_image, to_tensor, to_uint8, to_unit_range

MODES = ("downscaled", "tiles", "own")


def main(argv=None) -> dict:
    parser = script_parser(__doc__)
    parser.add_argument("photos", nargs="+", help="photos, folders or globs")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--model", help="the network an official checkpoint holds")
    parser.add_argument("--label", help="MixCL models: the class every photo is conditioned on")
    parser.add_argument("--tile", type=whole_number(16, MAX_SIDE), default=256)
    parser.add_argument("--overlap", type=whole_number(0, MAX_SIDE), default=64)
    parser.add_argument("--max-side", type=whole_number(1, MAX_SIDE), default=1024)
    args = parser.parse_args(argv)

    dehazer = Dehazer(load_model(args.checkpoint, args.model), device="cpu", amp="off", label=args.label, tile=None)
    print(f"{args.checkpoint}, tiles of {args.tile} overlapping by {args.overlap}; PSNR (dB) of the tiled output "
          f"against the whole image's, and seconds\n")
    print("| photo | size (H×W) | tiles | whole s | " + " | ".join(f"{m} dB | {m} s" for m in MODES) + " |")
    print("|---|---|---|---|" + "---|---|" * len(MODES))
    rows, warmed_up = [], False
    for path in find_images(args.photos):
        image = read_image(path)
        scale = min(1.0, args.max_side / max(image.shape[:2]))
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        x = to_tensor(image)[None].contiguous(memory_format=torch.channels_last)
        prior = () if dehazer.prior_of is None else (dehazer.prior_of(path.name, Image.fromarray(to_uint8(image))),)
        if not warmed_up:  # the first call's one-time costs (allocations, oneDNN's kernel choice) go untimed
            dehazer.forward(x, *prior)
            warmed_up = True
        started = time.perf_counter()
        whole = to_unit_range(dehazer.forward(x, *prior))
        row = {"photo": path.name, "size": tuple(image.shape[:2]), "whole_seconds": time.perf_counter() - started}
        for mode in MODES:
            started = time.perf_counter()
            tiled = tiled_forward(dehazer.model, x, *prior, tile=args.tile, overlap=args.overlap, statistics=mode)
            row[f"{mode}_seconds"] = time.perf_counter() - started
            row[f"{mode}_psnr"] = psnr(to_unit_range(tiled), whole).item()
        rows.append(row)
        padded = pad_to_multiple(x, *dehazer.model.size_rule())
        tiles = len(tile_layout(dehazer.model, *padded.shape[-2:], args.tile, args.overlap)[0])
        print(f"| {row['photo']} | {row['size'][0]}×{row['size'][1]} | {tiles} | {row['whole_seconds']:.2f} | "
              + " | ".join(f"{row[f'{m}_psnr']:.1f} | {row[f'{m}_seconds']:.2f}" for m in MODES) + " |", flush=True)
    summary = {m: (min(r[f"{m}_psnr"] for r in rows), statistics.median(r[f"{m}_psnr"] for r in rows),
                   sum(r[f"{m}_seconds"] for r in rows)) for m in MODES}
    whole_seconds = sum(r["whole_seconds"] for r in rows)
    print(f"\n{len(rows)} photos; whole images {whole_seconds:.1f} s in all")
    for mode, (lowest, median, seconds) in summary.items():
        print(f"- {mode}: lowest {lowest:.1f} dB, median {median:.1f} dB, {seconds:.1f} s in all")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
