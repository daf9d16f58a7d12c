"""Several runs of one method (e.g. seeds) as mean ± standard deviation, overall and per domain.

    python scripts/summarize_runs.py results/mixcl-s-seed*/summary.json

Reads summary.json files written by test.py (same test set) and prints PSNR and SSIM as mean ± std (ddof 1).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils.cli import run_reporting_user_errors, script_parser
from utils.config import ConfigError
from utils.paths import check_readable


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("summaries", type=Path, nargs="+", help="summary.json files of test.py, one per run")
    return parser.parse_args(argv)


def read_summary(path: Path) -> dict:
    try:
        summary = json.loads(check_readable(path, "test summary").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(summary, dict) or not {"psnr", "ssim", "images"} <= set(summary):
        raise ConfigError(f"{path}: not a summary.json of test.py (needs psnr, ssim and images)")
    return summary


def summarize_runs(summaries: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """subset ("all", then each domain every run has) → metric → (mean, std) over runs."""
    from metrics.statistics import mean_and_std  # scipy loads after --help

    if len({s["images"] for s in summaries}) > 1:
        raise ConfigError(f"the runs scored different numbers of images: {sorted({s['images'] for s in summaries})}")
    subsets = {"all": summaries}
    domains = set.intersection(*(set(s.get("by_domain", {})) for s in summaries))
    subsets |= {d: [s["by_domain"][d] for s in summaries] for d in sorted(domains)}
    return {name: {m: mean_and_std([r[m] for r in runs]) for m in ("psnr", "ssim")} for name, runs in subsets.items()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    table = summarize_runs([read_summary(p) for p in args.summaries])
    print(f"{len(args.summaries)} runs, mean ± std (ddof 1)")
    for subset, scores in table.items():
        (psnr, psnr_std), (ssim, ssim_std) = scores["psnr"], scores["ssim"]
        print(f"  {subset:<10} PSNR {psnr:.2f} ± {psnr_std:.2f} dB   SSIM {ssim:.4f} ± {ssim_std:.4f}")
    return table


if __name__ == "__main__":
    run_reporting_user_errors(main)
