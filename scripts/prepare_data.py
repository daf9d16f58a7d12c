"""Turn a benchmark's original download into the paired layout train.py and test.py read:
OUT/{train,test}/{GT,hazy}/<name>, one pair per hazy image, as links (no copies).

    python scripts/prepare_data.py ITS ~/Downloads/ITS_v2 data/RESIDE-IN            # SOTS-indoor's training set
    python scripts/prepare_data.py SOTS-indoor ~/Downloads/SOTS data/RESIDE-IN      # ... and its test set
    python scripts/prepare_data.py OTS ~/Downloads/OTS data/RESIDE-OUT
    python scripts/prepare_data.py SOTS-outdoor ~/Downloads/SOTS data/RESIDE-OUT
    python scripts/prepare_data.py Haze4K ~/Downloads/Haze4K data/Haze4K
    python scripts/prepare_data.py Dense-Haze ~/Downloads/Dense_Haze_NTIRE19 data/Dense-Haze
    python scripts/prepare_data.py NH-HAZE ~/Downloads/NH-HAZE data/NH-HAZE
    python scripts/prepare_data.py RESIDE-6K ~/Downloads/RESIDE-6K data/RESIDE-6K  # DehazeFormer's packaging, checked

Benchmarks: ITS, OTS, SOTS-indoor, SOTS-outdoor, RESIDE-6K, Haze4K, Dense-Haze, NH-HAZE, O-HAZE, I-HAZE. SOURCE is
the unpacked archive in its original layout (searched below, whatever the top folders are called), or a folder
already in DehazeFormer's {train,test}/{GT,hazy} layout, which is checked and linked as it is (with SOURCE = OUT,
only checked). Images the rule cannot pair, and training images smaller than --crop, are left out and listed in
OUT/prepare_<BENCHMARK>.txt with the reason. Running it again changes nothing that is already there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from utils.cli import MAX_SIDE, run_reporting_user_errors, script_parser, whole_number
from utils.paths import OutputFolder

BENCHMARKS = ("ITS", "OTS", "SOTS-indoor", "SOTS-outdoor", "RESIDE-6K", "Haze4K", "Dense-Haze", "NH-HAZE", "O-HAZE",
              "I-HAZE")
SHOWN = 20  # left-out images printed; the report file lists them all


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("benchmark", choices=BENCHMARKS, metavar="BENCHMARK", help=", ".join(BENCHMARKS))
    parser.add_argument("source", type=Path, help="the unpacked download")
    parser.add_argument("out", type=Path, help="the dataset folder a config's data.root names, e.g. data/RESIDE-IN")
    parser.add_argument("--crop", type=whole_number(0, MAX_SIDE),
                        help="leave out training images smaller than this (default: the largest crop of the benchmark's "
                             "released recipes; 0: keep all)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from datasets.prepare import LAYOUTS, prepare, report, report_path  # after --help: it loads PyTorch

    crop = LAYOUTS[args.benchmark].crop if args.crop is None else args.crop or None
    with OutputFolder(args.out):  # one preparation at a time into a folder
        plan, new = prepare(args.benchmark, args.source, args.out, crop,
                            progress=lambda items: tqdm(items, desc=args.benchmark, leave=False, dynamic_ncols=True))
    print(report(args.benchmark, args.source, args.out, plan, shown=SHOWN), end="")
    print(f"{new:,} new links or files, {2 * len(plan.pairs) - new:,} there already; the whole report: "
          f"{report_path(args.benchmark, args.out)}")


if __name__ == "__main__":
    run_reporting_user_errors(main)
