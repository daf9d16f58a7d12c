"""What a network costs: parameters, and the multiply-accumulates (MACs) of one forward pass as PyTorch's own
counter (torch.utils.flop_counter) counts them, halved (it counts a multiply-accumulate as two FLOPs):
convolutions, matrix products and attention. Elementwise operations, normalisation and pooling are not counted,
so counters that include BatchNorm and biases report slightly more (MixDehazeNet-T: 14.60G against 14.56G)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .build import build_model


@torch.no_grad()
def model_cost(name: str, size: tuple[int, int]) -> tuple[int, int]:
    """(parameters, MACs of one forward pass at 1×3×H×W) of a registered model with its default arguments (MixCL
    models: a text feature of their default width, CLIP ViT-B/32's)."""
    model = build_model(name).eval()
    inputs = model.example_inputs(1, *size)
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2
