"""Turn a folder of clean images (and optional depth maps) into a paired dataset in the RESIDE-6K layout,
with the multi-degradation haze model of datasets/haze_model.py.

    python scripts/synthesize_haze.py --clean photos/ --out data/MyHaze/train --variants 3
    python scripts/synthesize_haze.py --clean photos/ --depth depths/ --out data/MyHaze/train \
        --haze low_light=true jpeg=false "beta=[1.0, 3.0]"

Writes <out>/GT/<stem>_<k>.png (the clean image, repeated per variant), <out>/hazy/<stem>_<k>.png and
<out>/haze_parameters.jsonl (every draw, one line per hazy image). The same --seed gives the same dataset.
Without --depth, depth is a proxy growing towards the top of the frame.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from utils.cli import run_reporting_user_errors, script_parser, whole_number
from utils.config import ConfigError, parse_yaml
from utils.paths import OutputFolder


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("--clean", type=Path, required=True, help="folder of clean images")
    parser.add_argument("--depth", type=Path, help="folder of depth maps <stem>.png|.npy (larger = farther)")
    parser.add_argument("--out", type=Path, required=True, help="output split folder (gets GT/ and hazy/)")
    parser.add_argument("--variants", type=whole_number(1, 1000), default=1, help="hazy versions per clean image (1–1000)")
    parser.add_argument("--seed", type=whole_number(0, 2**63 - 1), default=0, help="random seed (a whole number ≥ 0)")
    parser.add_argument("--haze", nargs="*", default=[], metavar="KEY=VALUE",
                        help="haze model settings (datasets/haze_model.py), values parsed as YAML")
    return parser.parse_args(argv)


def haze_settings(settings: list[str]) -> dict:
    values = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--haze {item!r} is not of the form key=value")
        values[key] = parse_yaml(raw)
    return values


def main(args: argparse.Namespace) -> None:
    # NumPy, OpenCV and the haze model load after --help
    import numpy as np

    from datasets import validate_paired_folder
    from datasets.haze_model import HazeModel
    from datasets.paired import CLEAR_DIR, HAZY_DIR
    from datasets.synthetic import CleanImageFolder
    from utils.image import write_image

    try:
        model = HazeModel(**haze_settings(args.haze))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--haze: {e}") from None
    clean = CleanImageFolder(args.clean, args.depth)
    if (args.out / HAZY_DIR).exists() and any((args.out / HAZY_DIR).iterdir()):
        raise FileExistsError(f"{args.out / HAZY_DIR} is not empty: choose another --out")
    rng = np.random.default_rng(args.seed)
    records = []
    with OutputFolder(args.out):  # this run's alone, and writable, before the first image
        for name in tqdm(clean.names, desc="synthesize", dynamic_ncols=True):
            clear, depth = clean.load(name)
            for k in range(args.variants):
                hazy, params = model.synthesize(clear, depth, rng)
                out_name = f"{Path(name).stem}_{k}.png"
                write_image(args.out / CLEAR_DIR / out_name, clear)
                write_image(args.out / HAZY_DIR / out_name, hazy)
                records.append({"name": out_name, "source": name, "depth": depth is not None, **params.to_dict()})
        (args.out / "haze_parameters.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    validate_paired_folder(args.out)  # what train.py will check
    print(f"{len(records)} pairs written to {args.out}")


if __name__ == "__main__":
    run_reporting_user_errors(main, parse_args())
