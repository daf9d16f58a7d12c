"""ONNX: exporting a network at a fixed input size, and checking the graph against PyTorch with ONNX Runtime.

Inputs of an exported graph: `hazy` (1×3×H×W in [-1, 1]) and, for MixCL networks, `prior` (1×D text feature,
or 1 integer label for the `labels` prior). Output: `dehazed`, same shape and range as `hazy`. The graph takes
exactly the size it was exported at (a multiple of the network's size multiple). Graphs with free H and W
exported by torch 2.14 failed ONNX Runtime's shape checks at some sizes, so none is offered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import torch
import torch.nn as nn

from datasets.prior import prior_config_of


def example_inputs(model: nn.Module, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Named random inputs for one image: `hazy`, plus `prior` for networks that take one."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {"hazy": torch.rand(1, 3, height, width, generator=generator) * 2 - 1}
    if getattr(model, "takes_prior", False):
        if getattr(model, "label_embedding", None) is not None:
            inputs["prior"] = torch.randint(0, len(prior_config_of(model).classes), (1,), generator=generator)
        else:  # a unit-norm CLIP text feature; 512 is ViT-B/32's width (the fusion takes any length)
            inputs["prior"] = torch.nn.functional.normalize(torch.randn(1, 512, generator=generator), dim=-1)
    return inputs


def export_onnx(model: nn.Module, path: Path, height: int, width: int) -> None:
    """Write `model` (eval mode) as an ONNX graph for 1×3×height×width inputs."""
    multiple, min_size = getattr(model, "size_multiple", 1), getattr(model, "min_size", 1)
    if height % multiple or width % multiple or min(height, width) < min_size:
        raise ValueError(f"{height}×{width}: {model.model_name} needs multiples of {multiple}, at least {min_size}")
    inputs = example_inputs(model, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model.eval(), tuple(inputs.values()), path, dynamo=True, input_names=list(inputs),
                      output_names=["dehazed"], verbose=False)


def largest_difference(path: Path, model: nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """max |ONNX Runtime − PyTorch| over the output for these inputs."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(*inputs.values()).numpy()
    actual = session.run(["dehazed"], {name: value.numpy() for name, value in inputs.items()})[0]
    if actual.shape != expected.shape:
        raise ValueError(f"ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return float(np.abs(actual - expected).max())
