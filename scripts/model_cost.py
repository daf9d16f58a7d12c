"""Parameters and multiply-accumulates (MACs) of every registered model, as a markdown table.

    python scripts/model_cost.py                 # 1×3×256×256, the size the field reports
    python scripts/model_cost.py --size 460 620  # SOTS indoor

MACs are what PyTorch's own counter (torch.utils.flop_counter) counts in one forward pass, halved (it counts a
multiply-accumulate as two FLOPs): convolutions, matrix products and attention. Elementwise operations,
normalisation and pooling are not counted, so counters that include BatchNorm and biases report slightly more
(MixDehazeNet-T: 14.60G against 14.56G here). MixCL models get a 512-d text feature (CLIP ViT-B/32).
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import build_model, list_models


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"), help="input height and width")
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models(), metavar="MODEL",
                        help=f"models to count (default: all: {', '.join(list_models())})")
    return parser.parse_args(argv)


@torch.no_grad()
def model_cost(name: str, size: tuple[int, int]) -> tuple[int, int]:
    """(parameters, MACs of one forward pass at 1×3×H×W)."""
    model = build_model(name).eval()
    inputs = [torch.zeros(1, 3, *size)] + ([torch.zeros(1, 512)] if getattr(model, "takes_prior", False) else [])
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def main(argv=None) -> dict[str, tuple[int, int]]:
    args = parse_args(argv)
    costs = {name: model_cost(name, tuple(args.size)) for name in args.models}
    print(f"| model | parameters | MACs at 1×3×{args.size[0]}×{args.size[1]} |\n|---|---|---|")
    for name, (parameters, macs) in costs.items():
        print(f"| `{name}` | {parameters:,} ({parameters / 1e6:.3f}M) | {macs / 1e9:.2f}G |")
    return costs


if __name__ == "__main__":
    main()
