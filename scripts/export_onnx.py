"""Export a checkpoint's network to ONNX and check it against PyTorch with ONNX Runtime.

    python scripts/export_onnx.py --checkpoint runs/reside6k/mixdehazenet-s/best.pt --out mixdehazenet-s.onnx
    python scripts/export_onnx.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s --out m.onnx --size 480x640

Inputs of the exported graph: `hazy` (1×3×H×W in [-1, 1]) and, for MixCL networks, `prior` (1×D text
feature, or 1 integer label for the `labels` prior). Output: `dehazed`, same shape and range as `hazy`.
The graph takes exactly --size (a multiple of the network's size multiple: 4 for MixDehazeNet/MixCL, 16
for KA-Net): export one graph per input size, or pad photos to it (utils.image.pad_to_multiple) and crop
after. (Graphs with free H and W exported from torch 2.14 failed ONNX Runtime's shape checks in our
tests at some sizes, so none is offered.)
The export fails unless ONNX Runtime reproduces PyTorch within --tolerance on a fresh random input.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from models import load_model
from utils.cli import run_reporting_user_errors
from utils.config import PriorConfig


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--model", help="model name, for official checkpoints")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--size", default="256x256", help="HEIGHTxWIDTH of the example input (default 256x256)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted |ONNX − PyTorch| (default 1e-4)")
    return parser.parse_args(argv)


def example_inputs(model: torch.nn.Module, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Named random inputs for one image: `hazy`, plus `prior` for networks that take one."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {"hazy": torch.rand(1, 3, height, width, generator=generator) * 2 - 1}
    if getattr(model, "takes_prior", False):
        prior = PriorConfig(**(getattr(model, "prior_config", None) or {"mode": "clip"}))
        if getattr(model, "label_embedding", None) is not None:
            inputs["prior"] = torch.randint(0, len(prior.classes), (1,), generator=generator)
        else:  # a unit-norm CLIP text feature; 512 is ViT-B/32's width (the fusion takes any length)
            inputs["prior"] = torch.nn.functional.normalize(torch.randn(1, 512, generator=generator), dim=-1)
    return inputs


def largest_difference(path: Path, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """max |ONNX Runtime − PyTorch| over the output for these inputs."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(*inputs.values()).numpy()
    actual = session.run(["dehazed"], {name: value.numpy() for name, value in inputs.items()})[0]
    if actual.shape != expected.shape:
        raise ValueError(f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(actual - expected).max())


def export(args: argparse.Namespace) -> float:
    """Write the ONNX file; return its largest difference to PyTorch on an input it was not traced with."""
    model = load_model(args.checkpoint, args.model)
    height, width = (int(v) for v in args.size.lower().split("x"))
    multiple, min_size = getattr(model, "size_multiple", 1), getattr(model, "min_size", 1)
    if height % multiple or width % multiple or min(height, width) < min_size:
        raise ValueError(f"--size {args.size}: {model.model_name} needs multiples of {multiple}, at least {min_size}")
    inputs = example_inputs(model, height, width)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, tuple(inputs.values()), args.out, dynamo=True, input_names=list(inputs),
                      output_names=["dehazed"], verbose=False)

    difference = largest_difference(args.out, model, example_inputs(model, height, width, seed=1))
    print(f"{model.model_name} at {height}x{width}: largest |ONNX − PyTorch| = {difference:.2e}")
    if difference > args.tolerance:
        raise ValueError(f"{args.out}: ONNX Runtime differs from PyTorch by {difference:.2e} > {args.tolerance:.0e}")
    print(f"wrote {args.out}")
    return difference


if __name__ == "__main__":
    run_reporting_user_errors(export, parse_args())
