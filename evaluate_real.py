"""Dehaze real hazy photos (no ground truth, any sizes) and score input and output by the no-reference measures
real-world dehazing papers report: FADE (fog density), PIQE, NIQE and BRISQUE (lower = better) and entropy
(higher = more detail).

    python evaluate_real.py --checkpoint runs/demo/mixcl-t/best.pt photos/ --label outdoor --compare
    python evaluate_real.py --checkpoint runs/reside6k/ka-net/best.pt data/RTTS --max-side 1024

Writes to --out (default results/<run>/real): outputs/<stem>.png (the dehazed photos), per_image.csv (one row per
photo, written as soon as it is scored), summary.json, evaluation.json (what the scores are of: checkpoint and
settings) and, with --compare, comparisons/<stem>.jpg (input | output, scores printed under each). MixCL
checkpoints get their language prior as they were trained: CLIP on each photo, or the class given by --label
(one for all) or --labels (per photo). Every photo is checked before the first is dehazed.

A measure that has no value for a photo (FADE, NIQE and BRISQUE of a flat one, PIQE of an all-black one) is left
empty in its row, with the reason in the row's `undefined` column and in the log; the means and "better on"
counts are over the photos where input and output both have a value, and say how many were left out. A run that
stops keeps the rows it wrote: the same command again scores only the photos per_image.csv lacks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.cli import (
    MAX_SIDE,
    UserError,
    add_inference_arguments,
    add_model_arguments,
    inference_options,
    output_paths,
    real_path,
    run_name,
    run_reporting_user_errors,
    script_parser,
    whole_number,
)
from utils.paths import OutputFolder

TABLE, SETTINGS = "per_image.csv", "evaluation.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("inputs", nargs="+", help="hazy photos: files, folders or glob patterns (quote them)")
    add_model_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--max-side", type=whole_number(1, MAX_SIDE),
                        help="shrink larger photos to this longest side first (speed)")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<run>/real)")
    parser.add_argument("--compare", action="store_true", help="also write input | output comparisons with their scores")
    return parser.parse_args(argv)


def too_small_for_niqe(sizes: dict[Path, tuple[int, int]], max_side: int | None, block: int) -> None:
    """NIQE needs two blocks by one: checked for every photo before the first one is dehazed."""
    problems = []
    for path, (width, height) in sizes.items():
        scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
        short, long = sorted((round(width * scale), round(height * scale)))
        if short < block or long < 2 * block:
            problems.append(f"{path}: {width}×{height}{' after --max-side' if scale < 1 else ''} is too small for NIQE "
                            f"(needs {2 * block}×{block})")
    if problems:
        raise UserError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))


def shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return image


def caption(title: str, scores: dict, labels: dict[str, str]) -> str:
    """Lines under a panel, narrow enough for a small photo: the title and two measures, then two per line."""
    parts = [f"{labels[name]} {'n/a' if value is None else f'{value:.2f}'}" for name, value in scores.items()]
    return "\n".join("  ".join(line) for line in ([title, *parts[:2]], parts[2:4], parts[4:]) if line)


def settings(args: argparse.Namespace) -> dict:
    """What the scores in an output folder are of: the checkpoint as it is now, and every setting that changes them."""
    checkpoint = Path(args.checkpoint)
    return {"checkpoint": str(real_path(checkpoint)) if checkpoint.exists() else str(args.checkpoint),
            "checkpoint_modified": checkpoint.stat().st_mtime_ns if checkpoint.exists() else None,
            "model": args.model, "label": args.label, "labels": args.labels and str(real_path(args.labels)),
            "max_side": args.max_side, "amp": args.amp, "backend": args.backend, "tile": args.tile,
            "overlap": args.overlap, "compare": args.compare}


def run(args: argparse.Namespace) -> dict:
    with OutputFolder(args.out or Path("results") / run_name(args.checkpoint) / "real") as out:
        try:
            return evaluate(args, out)  # this run's folder alone, and writable, before any work
        except KeyboardInterrupt:
            print(f"interrupted: {out / TABLE} keeps every photo scored so far; the same command scores the rest",
                  file=sys.stderr)
            raise SystemExit(130) from None


def evaluate(args: argparse.Namespace, out: Path) -> dict:
    # PyTorch loads here, after the arguments are parsed: --help answers at once
    from inference import Dehazer
    from metrics.no_reference import NIQE_BLOCK
    from models import load_model
    from utils.image import check_images, find_images

    options = inference_options(args)
    paths = find_images(args.inputs)
    outputs = output_paths(paths, out / "outputs", ".png")
    too_small_for_niqe(check_images(paths), args.max_side, NIQE_BLOCK)  # before the first photo is dehazed
    scored = scored_before(out, settings(args), {outputs[p].name for p in paths})
    model = load_model(args.checkpoint, args.model)
    todo = [p for p in paths if outputs[p].name not in scored]
    if scored:
        print(f"{out / TABLE} already scores {len(scored)} of these {len(paths)} photos: "
              + (f"scoring the other {len(todo)}" if todo else "nothing left to score"))
    dehazer = Dehazer(model, **options, label=args.label, labels=args.labels)
    if todo:
        scored |= score_photos(args, dehazer, todo, outputs, out)
    summary = summarize([scored[outputs[p].name] for p in paths], model.model_name, args.checkpoint, dehazer.precision)
    report(summary, out)
    return summary


def scored_before(out: Path, current: dict, names: set[str]) -> dict[str, dict]:
    """The rows a previous run into `out` wrote (output file name → row), once they are known to be of these settings
    and photos; the settings are recorded when there are none yet."""
    from metrics.real_haze import read_score_rows
    from utils.checkpoint import write_text_atomically

    rows = read_score_rows(out / TABLE)
    if not rows:
        write_text_atomically(out / SETTINGS, json.dumps(current, indent=2) + "\n")
        return {}
    try:
        recorded = json.loads((out / SETTINGS).read_text())
    except (OSError, ValueError):
        raise UserError(f"{out / TABLE} holds scores, but {out / SETTINGS} does not say what they are of: choose "
                        f"another --out") from None
    if changed := [f"{key} {recorded.get(key)} (now {value})" for key, value in current.items() if recorded.get(key) != value]:
        raise UserError(f"{out / TABLE} holds scores of another evaluation ({'; '.join(changed)}): choose another --out")
    if others := sorted(set(rows) - names):
        raise UserError(f"{out / TABLE} scores photos not among the inputs ({', '.join(others[:5])}): choose another --out")
    return rows


def score_photos(args: argparse.Namespace, dehazer, paths: list[Path], outputs: dict[Path, Path], out: Path) -> dict:
    """Dehaze and score each photo, writing its output (and comparison) and its row as soon as it is done."""
    from metrics.real_haze import MEASURES, SCORE_FIELDS, score_photo, score_row
    from utils.cpu_memory import keep_freed_memory
    from utils.image import read_image, to_uint8, write_image
    from utils.pictures import side_by_side
    from utils.rows import RowWriter

    if dehazer.device.type == "cpu" and not args.no_keep_freed_memory:
        keep_freed_memory()  # process-wide: glibc keeps freed memory for the next photo (faster; utils/cpu_memory.py)
    labels = {name: measure.label for name, measure in MEASURES.items()}
    comparisons = output_paths(paths, out / "comparisons", ".jpg") if args.compare else {}
    rows = {}
    with RowWriter(out / TABLE, SCORE_FIELDS) as table:
        for path in tqdm(paths, desc="dehaze", dynamic_ncols=True):
            hazy8 = to_uint8(shrink(read_image(path), args.max_side))
            output8 = dehazer(hazy8, path.name)
            (hazy_scores, hazy_undefined), (output_scores, output_undefined) = score_photo(hazy8), score_photo(output8)
            write_image(outputs[path], output8)
            if args.compare:
                write_image(comparisons[path], side_by_side([hazy8, output8], [
                    caption("input", hazy_scores, labels), caption("output", output_scores, labels)]))
            undefined = [f"input: {r}" for r in hazy_undefined.values()] + [f"output: {r}" for r in output_undefined.values()]
            for reason in undefined:
                tqdm.write(f"{path}: {reason}")
            rows[outputs[path].name] = score_row(path.name, outputs[path].name, hazy8, hazy_scores, output_scores, undefined)
            table.write(rows[outputs[path].name])
    return rows


def summarize(rows: list[dict], model_name: str, checkpoint: Path, precision: str) -> dict:
    """Each measure's means over the photos where input and output both have a value, how often the output is
    better there, and how many photos were left out."""
    from metrics.real_haze import MEASURES

    summary = {"model": model_name, "checkpoint": str(checkpoint), "precision": precision, "images": len(rows)}
    for name, measure in MEASURES.items():
        pairs = [(r[f"input_{name}"], r[f"output_{name}"]) for r in rows
                 if r[f"input_{name}"] is not None and r[f"output_{name}"] is not None]
        summary[f"input_{name}"] = sum(a for a, _ in pairs) / len(pairs) if pairs else None
        summary[f"output_{name}"] = sum(b for _, b in pairs) / len(pairs) if pairs else None
        summary[f"{name}_improved"] = sum(measure.improves(a, b) for a, b in pairs)
        summary[f"{name}_left_out"] = len(rows) - len(pairs)
    return summary


def report(summary: dict, out: Path) -> None:
    """summary.json and the printed summary."""
    from metrics.real_haze import MEASURES

    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['model']} on {summary['images']} photos, precision {summary['precision']}")
    for name, measure in MEASURES.items():
        scored, left_out = summary["images"] - summary[f"{name}_left_out"], summary[f"{name}_left_out"]
        means = (f"input {summary[f'input_{name}']:.3f}  output {summary[f'output_{name}']:.3f}  "
                 f"(better on {summary[f'{name}_improved']} of {scored}" if scored else "(no photo has a value")
        print(f"  {measure.label:8s} {means}{f'; {left_out} left out: undefined' if left_out else ''})")
    print(f"  written to {out}")


def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    run_reporting_user_errors(main)
