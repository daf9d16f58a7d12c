"""Export a checkpoint's network to ONNX and check it against PyTorch with ONNX Runtime.

    python scripts/export_onnx.py --checkpoint runs/reside6k/mixdehazenet-s/best.pt --out mixdehazenet-s.onnx
    python scripts/export_onnx.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s --out m.onnx

The graph takes images of any height and width once padded to the network's size multiple (4 for
MixDehazeNet/MixCL, 16 for KA-Net; reflect padding, as the network pads itself) and returns them dehazed at
that size: crop the output back. inference/onnx.py describes its inputs and outputs. The export fails unless
ONNX Runtime reproduces PyTorch within --tolerance on a fresh random input of --check-size.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from utils.cli import UserError, add_model_arguments, number, run_reporting_user_errors, script_parser, size_pair

CHECK_SIDE = 4096  # the check runs the network on the CPU at --check-size: larger sides only cost memory


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--check-size", type=size_pair(CHECK_SIDE), default="230x310",
                        help="HEIGHTxWIDTH of the input the graph is checked on (default 230x310: padded by the check)")
    parser.add_argument("--tolerance", type=number(0, 1), default=1e-4,
                        help="largest accepted |ONNX − PyTorch|, in (0, 1] (default 1e-4)")
    return parser.parse_args(argv)


def export(args: argparse.Namespace) -> float:
    """Write the ONNX file; return its largest difference to PyTorch on an input it was not traced with."""
    from inference.onnx import example_inputs, export_onnx, largest_difference  # PyTorch loads after --help
    from models import load_model

    height, width = args.check_size
    model = load_model(args.checkpoint, args.model)
    export_onnx(model, args.out)
    difference = largest_difference(args.out, model, example_inputs(model, height, width, seed=1))
    print(f"{model.model_name}, checked at {height}x{width}: largest |ONNX − PyTorch| = {difference:.2e}")
    if difference > args.tolerance:
        raise UserError(f"{args.out}: ONNX Runtime differs from PyTorch by {difference:.2e} > {args.tolerance:.0e}")
    print(f"wrote {args.out}")
    return difference


def main(argv=None) -> float:
    return export(parse_args(argv))


if __name__ == "__main__":
    run_reporting_user_errors(main)
