"""ONNX: a network as an ONNX graph that takes any input size, and ONNX Runtime running it.

An exported graph takes `hazy` (1×3×H×W in [-1, 1]) and, for MixCL networks, `prior` (1×D text feature, or 1
integer label for the `labels` prior), and returns `dehazed` of the same shape. H and W are free, but must be
what the network pads to: multiples of its size multiple (4 for MixDehazeNet/MixCL, 16 for KA-Net) and at least
its minimum size; pad outside the graph with utils.image.pad_to_multiple (as the network itself pads) and crop
the output back. The graph is traced by PyTorch's TorchScript-based exporter: with the padding done outside,
nothing in it depends on the size it was traced at (the dynamo exporter's graphs with free sizes failed ONNX
Runtime's shape checks at some sizes).

`OnnxNetwork(model)` is such a graph under ONNX Runtime, called like the PyTorch module.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from models import DehazingNetwork
from utils.image import pad_to_multiple


def example_inputs(model: DehazingNetwork, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The graph's named inputs for one random image: `hazy`, plus `prior` for networks that take one."""
    return dict(zip(("hazy", "prior"), model.example_inputs(1, height, width, torch.Generator().manual_seed(seed))))


def trace_side(model: DehazingNetwork) -> int:
    """The square size graphs are traced at: small, and valid for the network's size rule."""
    multiple, min_size = model.size_rule()
    return max(min_size, 64) // multiple * multiple + multiple


def _export(module: nn.Module, inputs: dict[str, torch.Tensor], destination: Path | io.BytesIO) -> None:
    """Trace `module` with free height and width for every 4-D input and the output."""
    free = {name: {2: "height", 3: "width"} for name, value in inputs.items() if value.dim() == 4}
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), tuple(inputs.values()), destination, dynamo=False, input_names=list(inputs),
                          output_names=["dehazed"], dynamic_axes=free | {"dehazed": {2: "height", 3: "width"}},
                          opset_version=17)


def export_onnx(model: DehazingNetwork, path: Path) -> None:
    """Write `model` as an ONNX graph for padded inputs of any size (this module's docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _export(model, example_inputs(model, trace_side(model), trace_side(model)), path)


def largest_difference(path: Path, model: DehazingNetwork, inputs: dict[str, torch.Tensor]) -> float:
    """max |ONNX Runtime − PyTorch| over the output for these inputs (padded to the graph's rule, cropped back)."""
    import onnxruntime  # noqa: PLC0415 — imported where used: scripts that never run ONNX start 0.15 s sooner
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(*inputs.values()).numpy()
    height, width = inputs["hazy"].shape[-2:]
    feeds = {name: value.numpy() for name, value in inputs.items()}
    feeds["hazy"] = pad_to_multiple(inputs["hazy"], *model.size_rule()).numpy()
    actual = session.run(["dehazed"], feeds)[0][..., :height, :width]
    return float(np.abs(actual - expected).max())


class _BackboneGraph(nn.Module):
    """A MixCL network's backbone, from the padded image and the stem input to the (padded) output."""

    def __init__(self, model: DehazingNetwork):
        super().__init__()
        self.backbone = model.backbone

    def forward(self, hazy: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        return self.backbone.apply_gain_bias(hazy, self.backbone.forward_features(stem))


class OnnxNetwork:
    """`model` run by ONNX Runtime on the CPU, called like the module: `net(x, *prior)` → output tensor in
    [-1, 1], x 1×3×H×W of any size. The graph is exported once, in memory, and serves every size. For MixCL
    networks the text-image attention, a fused kernel in PyTorch that ONNX Runtime would have to materialise
    (H·W × D scores), stays in PyTorch; the backbone, nearly all of the computation, runs in ONNX Runtime."""

    def __init__(self, model: DehazingNetwork, threads: int = 0):
        self.model = model.eval()
        self.multiple, self.min_size = model.size_rule()
        self.mixcl = model.takes_prior  # MixCL: the text-image attention runs in PyTorch, the backbone in the graph
        example = example_inputs(model, trace_side(model), trace_side(model))
        graph = io.BytesIO()
        if self.mixcl:
            with torch.no_grad():
                stem = model.stem_input(example["hazy"], example["prior"])
            _export(_BackboneGraph(model), {"hazy": example["hazy"], "stem": stem}, graph)
        else:
            _export(model, example, graph)
        import onnxruntime  # noqa: PLC0415 — as above
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        self.session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, *prior: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        padded = pad_to_multiple(x.float().cpu(), self.multiple, self.min_size)
        if self.mixcl:
            feeds = {"hazy": padded, "stem": self.model.stem_input(padded, prior[0].cpu())}
        else:
            feeds = {"hazy": padded} | ({"prior": prior[0].cpu()} if prior else {})
        output = self.session.run(["dehazed"], {name: value.numpy() for name, value in feeds.items()})[0]
        return torch.from_numpy(output[..., :height, :width]).to(x.device)
