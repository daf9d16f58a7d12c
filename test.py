"""Evaluate a checkpoint by the field's protocol: full-resolution images, batch 1, PSNR on all RGB values,
SSIM after round(min(H, W)/256) average pooling (metrics/full_reference.py).

    python test.py --checkpoint runs/reside6k/mixdehazenet-t/best.pt --data data/RESIDE-6K/test
    python test.py --checkpoint MixDehazeNet-s.pth --model mixdehazenet-s --data data/RESIDE-6K/test
    python test.py --checkpoint runs/demo/mixcl-t/best.pt --data synthetic

Writes to --out (default results/<run>/test): per_image.csv, summary.json, the dehazed images (images/) and,
with --compare, captioned comparisons hazy | output | ground truth (comparisons/). When the images' scene
domains are known, scores are also reported per domain: from a domain_labels.csv beside GT/ and hazy/ (rows
`name,indoor|outdoor`), else for MixCL models from the CLIP prior's class (labelled as such).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tqdm import tqdm

from utils.cli import (
    UserError,
    add_inference_arguments,
    add_model_arguments,
    inference_options,
    output_paths,
    run_name,
    run_reporting_user_errors,
    script_parser,
)
from utils.paths import OutputFolder


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    add_model_arguments(parser)
    parser.add_argument("--data", required=True, help='paired test folder ({GT,hazy}/) or "synthetic"')
    add_inference_arguments(parser, amp_default="off")  # fp32, as the papers score: bf16 only when asked for
    parser.add_argument("--out", type=Path, help="output folder (default: results/<run>/test)")
    parser.add_argument("--no-images", action="store_true", help="do not write the dehazed images")
    parser.add_argument("--compare", action="store_true", help="also write hazy | output | ground truth comparisons")
    return parser.parse_args(argv)


def with_priors(model, dataset, args: argparse.Namespace, device):
    """The dataset with each image's prior attached as the network was trained (MixCL), and where its domains
    come from (None when nothing says)."""
    from datasets import attach_prior
    from prior import given_classes

    if not model.takes_prior:
        if args.label or args.labels:
            raise UserError(f"{model.model_name} takes no language prior: --label and --labels apply to MixCL models")
        return dataset, None
    prior = model.prior  # the settings the network was trained with
    class_of = given_classes(args.label, args.labels, prior.classes)
    (dataset,), _ = attach_prior(prior, [dataset], device, class_of)
    return dataset, ("the given classes" if class_of else "the labels prior" if prior.mode == "labels" else
                     f"the CLIP prior's class ({prior.clip_model}, {prior.clip_pretrained})")


def run(args: argparse.Namespace) -> dict:
    with OutputFolder(output_folder(args)) as out:  # this run's alone, and writable, before any work
        return test(args, out)


def test(args: argparse.Namespace, out: Path) -> dict:
    # PyTorch loads here, after the arguments are parsed: --help answers at once
    from torch.utils.data import DataLoader

    from datasets import WithFields, build_test_set, known_domains
    from engine import evaluate, summarize, summarize_by_domain
    from inference import Dehazer
    from models import load_model
    from utils.cpu_memory import keep_freed_memory

    options = inference_options(args)
    model = load_model(args.checkpoint, args.model)
    dataset = build_test_set(args.data)
    names = [Path(n) for n in getattr(dataset, "names", [])]
    images = output_paths(names, out / "images", ".png") if names else {}
    comparisons = output_paths(names, out / "comparisons", ".jpg") if names and args.compare else {}
    dehazer = Dehazer(model, **options, photo_priors=False)  # the dataset carries each image's prior
    if dehazer.device.type == "cpu" and not args.no_keep_freed_memory:
        keep_freed_memory()  # process-wide: glibc keeps freed memory for the next image (faster; utils/cpu_memory.py)
    dataset, domain_source = with_priors(model, dataset, args, dehazer.device)
    if (known := known_domains(args.data, [str(n) for n in names])) is not None:
        labels, domain_source = known
        dataset = WithFields(dataset, domain=labels)

    records = []
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    for record in tqdm(evaluate(model, loader, dehazer.device, forward=dehazer.forward), total=len(dataset),
                       desc="test", dynamic_ncols=True):
        write_results(record, args, images, comparisons, out)
        records.append({k: record[k] for k in ("name", "domain", "psnr", "ssim", "hazy_psnr", "hazy_ssim") if k in record})
    summary = {"model": model.model_name, "checkpoint": str(args.checkpoint), "data": str(args.data),
               "precision": dehazer.precision, **summarize(records)}
    if by_domain := summarize_by_domain(records):
        summary |= {"domain_source": domain_source, "by_domain": by_domain}
    report(records, summary, out)
    return summary


def write_results(record: dict, args: argparse.Namespace, images: dict, comparisons: dict, out: Path) -> None:
    """The dehazed image and, with --compare, hazy | output | ground truth with their scores."""
    from utils.image import to_uint8, write_image
    from utils.pictures import side_by_side

    name = Path(record["name"])
    if not args.no_images:
        write_image(images.get(name, out / "images" / f"{name.stem}.png"), record["output"])
    if args.compare:
        write_image(comparisons.get(name, out / "comparisons" / f"{name.stem}.jpg"), side_by_side(
            [to_uint8(record[k]) for k in ("hazy", "output", "gt")],
            [f"hazy  {record['hazy_psnr']:.2f} dB", f"output  {record['psnr']:.2f} dB  SSIM {record['ssim']:.3f}",
             "ground truth"]))


def output_folder(args: argparse.Namespace) -> Path:
    return args.out or Path("results") / run_name(args.checkpoint) / "test"


def report(records: list[dict], summary: dict, out: Path) -> None:
    """per_image.csv, summary.json and the printed summary."""
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    by_domain = summary.get("by_domain", {})
    lines = [f"{summary['model']} on {summary['data']} ({summary['images']} images, precision {summary['precision']})",
             f"  hazy input: PSNR {summary['hazy_psnr']:.2f} dB  SSIM {summary['hazy_ssim']:.4f}",
             f"  output:     PSNR {summary['psnr']:.2f} dB  SSIM {summary['ssim']:.4f}"]
    if by_domain:
        lines.append(f"  by domain, from {summary['domain_source']}:")
        lines += [f"    {domain:<10} {scores['images']:>5} images  PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.4f}"
                  f"  (hazy {scores['hazy_psnr']:.2f} dB)" for domain, scores in by_domain.items()]
    print("\n".join(lines + [f"  written to {out}"]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        kept = "" if args.no_images else f"; {output_folder(args) / 'images'} holds the images dehazed so far"
        print(f"interrupted: no scores were written{kept} (test.py starts over when run again)", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    run_reporting_user_errors(main)
