"""What every script shares: the meaning of its common flags, and how a user's mistake is reported (one line
naming the file and the problem, exit status 1, no traceback).

This module imports nothing heavy, so that a script can answer --help before it loads PyTorch.
"""
from __future__ import annotations

import argparse
from pathlib import Path

# The registered model names, for --help without importing PyTorch. tests/test_cli.py checks that this
# list is the registry's (models/registry.py); a new model is added in both places.
MODEL_NAMES = ("ka-net", "ka-net-tiny", "mixcl-b", "mixcl-l", "mixcl-s", "mixcl-t", "mixdehazenet-b", "mixdehazenet-l",
               "mixdehazenet-s", "mixdehazenet-t")
AMP_CHOICES = ("off", "fp16", "bf16")
BACKEND_CHOICES = ("pytorch", "onnxruntime")


class UserError(Exception):
    """A problem with what the user gave (config, data, checkpoint, weights, paths), found before or during a
    run: the message names the file and says what to do."""


def run_reporting_user_errors(function, *args, **kwargs):
    """Call `function`; a UserError or an operating-system error (missing file, permission, full disk) ends
    the program with its one-line message and exit status 1 instead of a traceback."""
    try:
        return function(*args, **kwargs)
    except (UserError, OSError) as e:
        raise SystemExit(f"error: {e}") from None


def script_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --model, the same in every script that runs a trained network."""
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint of this project, or an official one (MixDehazeNet, MixCLDehazeNet, "
                             "KA-Net) with --model")
    parser.add_argument("--model", choices=MODEL_NAMES, metavar="MODEL",
                        help="the network an official checkpoint holds (this project's checkpoints name theirs): "
                             + ", ".join(MODEL_NAMES))


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --amp, --backend, --label, --labels, --tile and --overlap: how the network runs on each image."""
    parser.add_argument("--device", help="cuda, cuda:1, cpu … (default: cuda when available, cpu for onnxruntime)")
    parser.add_argument("--amp", choices=AMP_CHOICES, default="off", help="autocast dtype (default off: fp32, the protocol's)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="pytorch",
                        help="pytorch (default) or onnxruntime: the network's ONNX graph under ONNX Runtime, fp32 on the "
                             "CPU (faster there; tiles still run in PyTorch)")
    parser.add_argument("--label", help="MixCL models: condition every image on this class (e.g. outdoor) instead of "
                                        "CLIP's zero-shot class")
    parser.add_argument("--labels", type=Path, metavar="CSV",
                        help="MixCL models: a per-image class file, rows `name,class` (e.g. a domain_labels.csv)")
    parser.add_argument("--tile", type=tile_size, default="auto",
                        help='"auto" (default: tiles when the whole image does not fit), "off", or a tile size in pixels')
    parser.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (default 64)")


def inference_options(args: argparse.Namespace) -> dict:
    """The Dehazer options (inference/dehazer.py) of add_inference_arguments' flags, less the priors'."""
    if args.backend == "onnxruntime" and (args.amp != "off" or (args.device or "cpu") != "cpu"):
        raise UserError(f"--backend onnxruntime runs fp32 on the CPU: drop --amp {args.amp} and --device {args.device} "
                        f"or use --backend pytorch")
    device = args.device or ("cpu" if args.backend == "onnxruntime" else None)
    return {"device": device, "amp": args.amp, "backend": args.backend, "tile": args.tile, "overlap": args.overlap}


def tile_size(value: str) -> str | int | None:
    if value in ("auto", "off"):
        return None if value == "off" else value
    if not value.isdigit() or int(value) < 16:
        raise argparse.ArgumentTypeError(f'must be "auto", "off" or a size in pixels (at least 16), got {value!r}')
    return int(value)


def run_name(checkpoint: Path) -> str:
    """The name outputs are filed under: the run folder for a run's best.pt or last.pt (runs/demo/mixcl-t/best.pt →
    mixcl-t, last.pt → mixcl-t-last), else the file's stem (MixDehazeNet-s.pth → MixDehazeNet-s)."""
    checkpoint = Path(checkpoint)
    folder = checkpoint.resolve().parent.name
    if checkpoint.stem in ("best", "last") and folder:
        return folder if checkpoint.stem == "best" else f"{folder}-last"
    return checkpoint.stem


def output_paths(inputs: list[Path], folder: Path, suffix: str) -> dict[Path, Path]:
    """Where each input's result goes: folder/<stem><suffix>, or folder/<name><suffix> for inputs that share a
    stem (x.jpg and x.png → x.jpg.png, x.png.png), so that no result overwrites another. A result that would
    overwrite an input is an error: nothing a user owns is overwritten."""
    stems = [p.stem for p in inputs]
    outputs = {p: folder / f"{p.stem if stems.count(p.stem) == 1 else p.name}{suffix}" for p in inputs}
    sources = {p.resolve() for p in inputs}
    clashes = [f"{target} (from {path})" for path, target in outputs.items() if target.resolve() in sources]
    if len(set(outputs.values())) < len(outputs) or clashes:
        raise UserError(f"results would overwrite input files: {', '.join(clashes[:5]) or 'two inputs share a name'}; "
                        f"choose another output folder")
    return outputs
