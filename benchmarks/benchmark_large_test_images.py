"""Test images of Dense-Haze and NH-HAZE size (1600×1200): whether scoring them through tiles, as test.py does where
a whole image does not fit, changes the protocol's PSNR and SSIM, and the peak memory of a whole-image pass.

    python benchmarks/benchmark_large_test_images.py --checkpoint runs/demo/mixcl-t/best.pt --label outdoor \
        --data path/to/test_split --size 1600x1200
    python benchmarks/benchmark_large_test_images.py --random-model mixdehazenet-l --data ... --size 1600x1200  # memory

Pairs of --data ({GT,hazy}/) are resized to --size (bicubic) when given, so that any paired folder stands in for
1600×1200 test images. Each image is scored by the protocol (metrics/full_reference.py) on the whole-image output and
on the tiled one (test.py's tiles: 512 pixels, overlap 64, statistics from a downscaled pass). Peak memory: of this
process on the CPU (resident set), of PyTorch's allocator on CUDA.
"""
from __future__ import annotations

import resource
from pathlib import Path

import cv2
import torch
from PIL import Image

from datasets import validate_paired_folder
from inference import Dehazer
from metrics import psnr, ssim
from models import build_model, load_model
from utils.cli import script_parser, size_pair
from utils.image import read_image, to_tensor, to_uint8, to_unit_range


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def load_pair(folder: Path, name: str, size: tuple[int, int] | None) -> list:
    """The pair's hazy and clear images as H×W×3 arrays in [0, 1], resized to `size` when given."""
    images = [read_image(folder / kind / name) for kind in ("hazy", "GT")]
    if size is not None:
        images = [cv2.resize(image, size, interpolation=cv2.INTER_CUBIC).clip(0, 1) for image in images]
    return images


def main(argv=None) -> list[dict]:
    parser = script_parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--random-model", help="a registered network with random weights (for its memory; its scores "
                                               "mean nothing)")
    parser.add_argument("--model", help="the network an official checkpoint holds")
    parser.add_argument("--label", help="MixCL models: the class every image is conditioned on")
    parser.add_argument("--data", type=Path, required=True, help="a paired folder with GT/ and hazy/")
    parser.add_argument("--size", type=size_pair(form="WIDTHxHEIGHT"),
                        help="resize every pair to WIDTHxHEIGHT first, e.g. 1600x1200")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    model = load_model(args.checkpoint, args.model) if args.checkpoint else build_model(args.random_model)
    whole, tiled = (Dehazer(model, device=args.device, label=args.label, tile=tile) for tile in (None, 512))
    print(f"{args.checkpoint or args.random_model} on {args.data} at {args.size or 'their own size'}, {args.device}\n")
    print("| image | PSNR whole | PSNR tiled | difference | SSIM whole | SSIM tiled | tiled vs whole |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in validate_paired_folder(args.data):
        hazy, gt = load_pair(args.data, name, args.size)
        prior = () if whole.prior_of is None else (whole.prior_of(name, Image.fromarray(to_uint8(hazy))),)
        gt = to_unit_range(to_tensor(gt)[None].to(whole.device))
        outputs = [to_unit_range(d.forward(to_tensor(hazy)[None].to(d.device), *prior)) for d in (whole, tiled)]
        row = {"name": name, **{f"{k}_{m}": f(o, gt).item() for k, f in (("psnr", psnr), ("ssim", ssim))
                                for m, o in zip(("whole", "tiled"), outputs)},
               "agreement": psnr(outputs[1], outputs[0]).item()}
        rows.append(row)
        print(f"| {name} | {row['psnr_whole']:.3f} | {row['psnr_tiled']:.3f} | {row['psnr_tiled'] - row['psnr_whole']:+.3f} | "
              f"{row['ssim_whole']:.4f} | {row['ssim_tiled']:.4f} | {row['agreement']:.1f} dB |", flush=True)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr_whole", "psnr_tiled", "ssim_whole", "ssim_tiled")}
    largest = max(abs(r["psnr_tiled"] - r["psnr_whole"]) for r in rows)
    print(f"\nmean PSNR whole {mean['psnr_whole']:.3f} dB, tiled {mean['psnr_tiled']:.3f} dB "
          f"({mean['psnr_tiled'] - mean['psnr_whole']:+.3f}); SSIM {mean['ssim_whole']:.4f} / {mean['ssim_tiled']:.4f}; "
          f"largest PSNR change of one image {largest:.3f} dB; peak memory {peak_memory_gb(whole.device):.2f} GB")
    return rows


if __name__ == "__main__":
    main()
