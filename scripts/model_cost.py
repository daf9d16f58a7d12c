"""Parameters and multiply-accumulates (MACs) of registered models, as a markdown table (models/cost.py says
what is counted).

    python scripts/model_cost.py                 # every model at 1×3×256×256, the size the field reports
    python scripts/model_cost.py --size 460 620  # SOTS indoor
"""
from __future__ import annotations

import argparse

from utils.cli import model_names, run_reporting_user_errors, script_parser, whole_number


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("--size", type=whole_number(1, 4096), nargs=2, default=(256, 256), metavar=("H", "W"),
                        help="input height and width (1–4096; the network runs once at that size)")
    parser.add_argument("--models", nargs="+", default=list(model_names()), choices=model_names(), metavar="MODEL",
                        help=f"models to count (default: all: {', '.join(model_names())})")
    return parser.parse_args(argv)


def main(argv=None) -> dict[str, tuple[int, int]]:
    args = parse_args(argv)
    from models.cost import model_cost  # PyTorch loads after --help

    costs = {name: model_cost(name, tuple(args.size)) for name in args.models}
    print(f"| model | parameters | MACs at 1×3×{args.size[0]}×{args.size[1]} |\n|---|---|---|")
    for name, (parameters, macs) in costs.items():
        print(f"| `{name}` | {parameters:,} ({parameters / 1e6:.3f}M) | {macs / 1e9:.2f}G |")
    return costs


if __name__ == "__main__":
    run_reporting_user_errors(main)
