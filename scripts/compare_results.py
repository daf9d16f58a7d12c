"""Is method B better than method A on the same test images, beyond the spread between images?

    python scripts/compare_results.py results/mixdehazenet-s/per_image.csv results/mixcl-s/per_image.csv

Reads two per_image.csv files written by test.py for the same images and prints, for PSNR and SSIM, overall and
per domain when both files carry one: the means, the mean difference B − A with its 95% bootstrap confidence
interval (BCa over images), and the Wilcoxon signed-rank p-value of the per-image differences.
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path

from utils.cli import number, run_reporting_user_errors, script_parser
from utils.config import ConfigError
from utils.paths import check_readable

METRICS = ("psnr", "ssim")


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("a", type=Path, help="per_image.csv of method A (the baseline)")
    parser.add_argument("b", type=Path, help="per_image.csv of method B")
    parser.add_argument("--confidence", type=number(0, 1, open_high=True), default=0.95,
                        help="confidence level of the interval, in (0, 1) (default 0.95)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    return parser.parse_args(argv)


def read_scores(path: Path) -> dict[str, dict]:
    """name → row (psnr and ssim as floats) of a test.py per_image.csv."""
    check_readable(path, "per-image scores")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in ("name", *METRICS) if not rows or c not in rows[0]]
    if missing:
        raise ConfigError(f"{path}: not a per_image.csv of test.py (no {', '.join(missing)} column, or no rows)")
    return {r["name"]: r | {m: float(r[m]) for m in METRICS} for r in rows}


def image_subsets(a: dict[str, dict], b: dict[str, dict]) -> dict[str, list[str]]:
    """"all" images, then each domain's when both files carry the same domains."""
    names = sorted(a)
    subsets = {"all": names}
    if all("domain" in r for r in (*a.values(), *b.values())):
        disagree = [n for n in names if a[n]["domain"] != b[n]["domain"]]
        if disagree:
            raise ConfigError(f"the two files give different domains to {', '.join(disagree[:5])}")
        for domain in sorted({a[n]["domain"] for n in names}):
            subsets[domain] = [n for n in names if a[n]["domain"] == domain]
    return subsets


def compare(a: dict[str, dict], b: dict[str, dict], confidence: float = 0.95) -> list[dict]:
    """One row per (subset, metric): subset "all", then each domain when both sides know the domains."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ConfigError(f"the two files score different images: {len(only_a)} only in A ({', '.join(only_a[:5])}), "
                          f"{len(only_b)} only in B ({', '.join(only_b[:5])})")
    from metrics.statistics import paired_difference  # scipy loads after --help

    subsets = image_subsets(a, b)
    rows = []
    for metric in METRICS:
        for subset, chosen in subsets.items():
            if len(chosen) < 2:
                continue
            result = paired_difference([a[n][metric] for n in chosen], [b[n][metric] for n in chosen], confidence)
            rows.append({"metric": metric, "subset": subset, **asdict(result), "significant": result.significant})
    return rows


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    rows = compare(read_scores(args.a), read_scores(args.b), args.confidence)
    level = f"{args.confidence:.0%}"
    print(f"B = {args.b}\nA = {args.a}\nB − A per image; {level} bootstrap interval (BCa); Wilcoxon signed-rank p\n")
    print(f"{'':14}{'images':>7}{'A':>10}{'B':>10}{'B − A':>10}   {level + ' interval':<22}{'p':>9}")
    for r in rows:
        digits = 2 if r["metric"] == "psnr" else 4
        interval = f"[{r['ci_low']:+.{digits}f}, {r['ci_high']:+.{digits}f}]"
        verdict = "  significant" if r["significant"] else ""
        print(f"{r['metric'].upper() + ' ' + r['subset']:<14}{r['images']:>7}{r['mean_a']:>10.{digits}f}"
              f"{r['mean_b']:>10.{digits}f}{r['difference']:>+10.{digits}f}   {interval:<22}{r['p_value']:>9.2g}{verdict}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    run_reporting_user_errors(main)
