"""Run CLIP once over the train and test splits of a config and write their prior caches (one file each).

    python scripts/compute_clip_prior.py configs/reside6k/mixcl-s.yaml [data.root=/data/RESIDE-6K]

train.py and test.py do the same on start-up when a cache is missing or stale; this script does it ahead
(for instance on a machine that has the CLIP weights) and prints how many images fell in each class.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from utils.cli import UserError, run_reporting_user_errors, script_parser
from utils.config import load_config


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=/data/RESIDE-6K")
    args = parser.parse_args(argv)
    import torch  # PyTorch loads after --help

    from datasets import validate_paired_folder
    from datasets.prior import split_prior_cache
    from prior import prior_cache_path

    config = load_config(args.config, args.overrides)
    if config.prior.mode not in ("clip", "clip-soft") or config.data.dataset != "paired":
        raise UserError(f"{args.config}: only CLIP priors (prior.mode clip or clip-soft) of paired data have caches")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for split in (config.data.train_split, config.data.test_split):
        folder = Path(config.data.root) / split
        validate_paired_folder(folder)  # a clear error for a missing or broken split
        cache = split_prior_cache(config.prior, folder, device)
        counts = Counter(config.prior.classes[i] for i in cache["probabilities"].argmax(dim=1).tolist())
        print(f"{folder}: {len(cache['names'])} images, {dict(counts)} → {prior_cache_path(config.prior, folder)}")


if __name__ == "__main__":
    run_reporting_user_errors(main)
