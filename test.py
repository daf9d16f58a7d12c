"""Evaluate a checkpoint by the field's protocol: full-resolution images, batch 1, PSNR on all RGB values,
SSIM after round(min(H, W)/256) average pooling (utils/metrics.py).

    python test.py --checkpoint runs/reside6k/mixdehazenet-t/best.pt --data data/RESIDE-6K/test
    python test.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s --data data/RESIDE-6K/test
    python test.py --checkpoint runs/demo/mixdehazenet-t/best.pt --data synthetic

Writes to --out: per_image.csv, summary.json, the dehazed images (images/) and, with --grids, captioned
comparisons hazy | output | ground truth (grids/). When the images' scene domains are known, scores are also
reported per domain: from a domain_labels.csv beside GT/ and hazy/ (rows `name,indoor|outdoor`), else for
MixCL models from the CLIP prior's class (labelled as such).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets import WithFields, attach_prior, build_test_set, known_domains
from models import load_model
from utils.cli import run_reporting_user_errors
from utils.config import PriorConfig
from utils.evaluation import evaluate, summarize, summarize_by_domain
from utils.image import to_uint8, write_image
from utils.inference import AMP_DTYPES
from utils.pictures import side_by_side


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="this project's checkpoint, or an official one with --model")
    parser.add_argument("--model", help="model name; required for official checkpoints, read from this project's")
    parser.add_argument("--data", required=True, help='paired test folder ({GT,hazy}/) or "synthetic"')
    parser.add_argument("--out", type=Path, help="output folder (default: results/<checkpoint name>)")
    parser.add_argument("--amp", choices=AMP_DTYPES, default="off", help="autocast on CUDA (the protocol uses fp32)")
    parser.add_argument("--no-images", action="store_true", help="do not write the dehazed images")
    parser.add_argument("--grids", action="store_true", help="also write hazy | output | ground truth comparisons")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp_dtype = AMP_DTYPES[args.amp] if device.type == "cuda" else None
    model = load_model(args.checkpoint, args.model).to(device)
    dataset = build_test_set(args.data)
    domain_source = None
    if getattr(model, "takes_prior", False):
        # the prior set-up the model was trained with; the released one (CLIP ViT-B/32, arg-max class) for official checkpoints
        prior = PriorConfig(**(getattr(model, "prior_config", None) or {"mode": "clip"}))
        (dataset,), _ = attach_prior(prior, [dataset], device)
        domain_source = ("the labels prior" if prior.mode == "labels" else
                         f"the CLIP prior's class ({prior.clip_model}, {prior.clip_pretrained})")
    known = known_domains(args.data, getattr(dataset, "names", []))
    if known is not None:
        labels, domain_source = known
        dataset = WithFields(dataset, domain=labels)
    out = args.out or Path("results") / args.checkpoint.stem
    out.mkdir(parents=True, exist_ok=True)

    records = []
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    for record in tqdm(evaluate(model, loader, device, amp_dtype), total=len(dataset), desc="test", dynamic_ncols=True):
        if not args.no_images:
            write_image(out / "images" / f"{Path(record['name']).stem}.png", record["output"])
        if args.grids:
            write_image(out / "grids" / f"{Path(record['name']).stem}.jpg", side_by_side(
                [to_uint8(record[k]) for k in ("hazy", "output", "gt")],
                [f"hazy  {record['hazy_psnr']:.2f} dB", f"output  {record['psnr']:.2f} dB  SSIM {record['ssim']:.3f}",
                 "ground truth"]))
        records.append({k: record[k] for k in ("name", "domain", "psnr", "ssim", "hazy_psnr", "hazy_ssim") if k in record})

    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    summary = {"model": model.model_name, "checkpoint": str(args.checkpoint), "data": str(args.data), **summarize(records)}
    by_domain = summarize_by_domain(records)
    if by_domain:
        summary |= {"domain_source": domain_source, "by_domain": by_domain}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"{summary['model']} on {args.data} ({summary['images']} images)",
             f"  hazy input: PSNR {summary['hazy_psnr']:.2f} dB  SSIM {summary['hazy_ssim']:.4f}",
             f"  output:     PSNR {summary['psnr']:.2f} dB  SSIM {summary['ssim']:.4f}"]
    if by_domain:
        lines.append(f"  by domain, from {domain_source}:")
        lines += [f"    {domain:<10} {scores['images']:>5} images  PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.4f}"
                  f"  (hazy {scores['hazy_psnr']:.2f} dB)" for domain, scores in by_domain.items()]
    print("\n".join(lines + [f"  written to {out}"]))
    return summary


if __name__ == "__main__":
    run_reporting_user_errors(run, parse_args())
