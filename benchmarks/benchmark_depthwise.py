"""Forward and backward time of MixDehazeNet's dilated depthwise convolutions: PyTorch's own backward
against DilatedDepthwiseConv2d's (models/layers.py), at the shapes of a MixCL-S / MixDehazeNet-S step.

    python benchmarks/benchmark_depthwise.py                 # batch 4, 256×256 input (maps 256, 128, 64)
    python benchmarks/benchmark_depthwise.py --batch 16

Median of --repeats calls after one warm-up, same process; prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import torch

from benchmarks.benchmark_models import machine, median_seconds
from models.layers import DilatedDepthwiseConv2d
from models.mixdehazenet import WIDTHS
from utils.cli import script_parser, whole_number


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--batch", type=whole_number(1, 1024), default=4)
    parser.add_argument("--size", type=whole_number(4, 8192), default=256)
    parser.add_argument("--repeats", type=whole_number(1, 1000), default=5)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    print(f"Machine: {machine()}; batch {args.batch}; median of {args.repeats} calls\n")
    print("| map (C×H×W) | kernel, dilation | forward ms | PyTorch fwd+bwd ms | ours fwd+bwd ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for scale, dim in enumerate(WIDTHS[:3]):
        size = args.size >> scale
        x = torch.randn(args.batch, dim, size, size, requires_grad=True)
        grad = torch.randn_like(x)
        for kernel_size in (7, 5, 3):
            conv = DilatedDepthwiseConv2d(dim, kernel_size, dilation=3, padding_mode="reflect")
            with torch.no_grad():
                forward = median_seconds(lambda conv=conv, x=x: conv(x), device, args.repeats)
            times = {}
            for fast in (False, True):
                conv.fast_cpu_backward = fast
                conv(x).backward(grad)  # warm-up
                times[fast] = median_seconds(lambda conv=conv, x=x, grad=grad: conv(x).backward(grad), device, args.repeats)
            print(f"| {dim}×{size}×{size} | {kernel_size}×{kernel_size}, 3 | {forward * 1e3:.1f} | "
                  f"{times[False] * 1e3:.1f} | {times[True] * 1e3:.1f} | {times[False] / times[True]:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
