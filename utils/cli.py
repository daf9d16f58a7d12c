"""What every script shares: the meaning of its common flags, and how a user's mistake is reported (one line
naming the file and the problem, exit status 1, no traceback).

This module imports nothing heavy, so that a script can answer --help before it loads PyTorch.
"""
from __future__ import annotations

import argparse
import ast
import functools
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .precision import AMP_NAMES

BACKEND_CHOICES = ("pytorch", "onnxruntime")
# Whole-image inference on the CPU above this size switches to tiles (memory: BENCHMARKS.md, "predict.py on large
# photos"); predict.py's --max-whole-pixels changes it.
MAX_WHOLE_PIXELS_CPU = 2_000_000
AUTO_TILE = 512  # the tile size of --tile auto
MAX_PIXELS = 2**28  # 268 megapixels: an image whose header claims more is refused before it is decoded (utils/image.py)
MAX_SIDE = 2**16    # the largest size in pixels any option takes (a tile, a side, a check size)
# The largest photo the web app (app.py --max-pixels) takes from a page anyone may reach; predict.py takes any size.
MAX_APP_PIXELS = 50_000_000


class UserError(Exception):
    """A problem with what the user gave (config, data, checkpoint, weights, paths), found before or during a
    run: the message names the file and says what to do."""


def run_reporting_user_errors(function, *args, **kwargs):
    """Call `function`; a UserError or an operating-system error (missing file, permission, full disk) ends
    the program with its one-line message and exit status 1 instead of a traceback, and Ctrl-C with one line
    and status 130 (a script that can say more about what it kept catches KeyboardInterrupt itself)."""
    try:
        return function(*args, **kwargs)
    except (UserError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


@functools.cache
def model_names() -> tuple[str, ...]:
    """The registered model names, read from the constructors decorated with @register_model in models/*.py
    without importing PyTorch, so that --help answers at once (tests/test_cli.py checks them against the
    registry itself)."""
    names = []
    for path in sorted((Path(__file__).resolve().parents[1] / "models").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id == "register_model" for d in node.decorator_list):
                names.append(node.name.replace("_", "-"))
    return tuple(sorted(names))


class ScriptParser(argparse.ArgumentParser):
    """argparse, with a usage error (an unknown flag, a missing argument, a value an option's type refuses) reported
    as every user error is: one line naming the option, exit status 1."""

    def error(self, message: str):
        raise SystemExit(f"error: {message} ({self.prog} --help lists the options)")


def script_parser(description: str) -> argparse.ArgumentParser:
    return ScriptParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def _within(value: float, low: float, high: float | None, open_low: bool = False, open_high: bool = False) -> bool:
    above = value > low if open_low else value >= low
    below = high is None or (value < high if open_high else value <= high)
    return above and below


def _interval(low: float, high: float | None, open_low: bool = False, open_high: bool = False) -> str:
    if high is None:
        return f"{'>' if open_low else '≥'} {low:g}"
    if not (open_low or open_high):
        return f"from {low:g} to {high:g}"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def whole_number(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high`. Zero or negative where they mean nothing, and absurd
    sizes, are refused before any work, naming the option (argparse adds its name to the message)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not _within(value, low, high):
            raise argparse.ArgumentTypeError(f"must be a whole number {_interval(low, high)}, got {text}")
        return value
    return parse


def number(low: float, high: float | None = None, open_low: bool = True, open_high: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number between `low` and `high` (each excluded or not); NaN and infinity are
    refused like any value out of range."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and _within(value, low, high, open_low, open_high)):
            raise argparse.ArgumentTypeError(f"must be a number {_interval(low, high, open_low, open_high)}, got {text}")
        return value
    return parse


def size_pair(high: int = MAX_SIDE, form: str = "HEIGHTxWIDTH") -> Callable[[str], tuple[int, int]]:
    """An argparse type: two whole numbers from 1 to `high` written as `form` says (e.g. 230x310), in that order."""
    def parse(text: str) -> tuple[int, int]:
        parts = text.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"expected {form} in pixels, e.g. 230x310, got {text!r}")
        values = tuple(int(p) for p in parts)
        if not all(_within(v, 1, high) for v in values):
            raise argparse.ArgumentTypeError(f"sizes must be whole numbers from 1 to {high}, got {text}")
        return values
    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --model, the same in every script that runs a trained network."""
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a checkpoint of this project, a model folder (scripts/export_pretrained.py) or a Hugging "
                             "Face repository id holding one, or an official checkpoint (MixDehazeNet, MixCLDehazeNet, "
                             "KA-Net) with --model")
    parser.add_argument("--model", choices=model_names(), metavar="MODEL",
                        help="the network an official checkpoint holds (this project's checkpoints name theirs): "
                             + ", ".join(model_names()))


def add_inference_arguments(parser: argparse.ArgumentParser, amp_default: str = "auto") -> None:
    """--device, --amp, --backend, --label, --labels, --tile and --overlap: how the network runs on each image.
    test.py passes amp_default "off": its scores are compared with papers' fp32 ones."""
    parser.add_argument("--device", help="cuda, cuda:1, cpu … (default: cuda when available, cpu for onnxruntime)")
    parser.add_argument("--amp", choices=AMP_NAMES, default=amp_default,
                        help=f"precision (default {amp_default}): auto (bf16 on a CPU that computes it natively, else "
                             f"fp32), off (fp32, the protocol's), fp16 (CUDA; fp32 on the CPU) or bf16")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="pytorch",
                        help="pytorch (default) or onnxruntime: the network's ONNX graph under ONNX Runtime, fp32 on the "
                             "CPU (tiles still run in PyTorch)")
    parser.add_argument("--label", help="MixCL models: condition every image on this class (e.g. outdoor) instead of "
                                        "CLIP's zero-shot class")
    parser.add_argument("--labels", type=Path, metavar="CSV",
                        help="MixCL models: a per-image class file, rows `name,class` (e.g. a domain_labels.csv)")
    parser.add_argument("--tile", type=tile_size, default="auto",
                        help='"auto" (default: tiles when the whole image does not fit), "off", or a tile size in pixels')
    parser.add_argument("--overlap", type=whole_number(0, MAX_SIDE), default=64,
                        help="pixels shared by neighbouring tiles, less than half a tile (default 64)")
    parser.add_argument("--no-keep-freed-memory", action="store_true",
                        help="on the CPU, let glibc hand freed memory back to the system (lower resident memory, "
                             "slower); by default it is kept for the next image (utils/cpu_memory.py)")


def inference_options(args: argparse.Namespace) -> dict:
    """The Dehazer options (inference/dehazer.py) of add_inference_arguments' flags, less the priors'."""
    if args.backend == "onnxruntime" and (args.amp not in ("auto", "off") or (args.device or "cpu") != "cpu"):
        raise UserError(f"--backend onnxruntime runs fp32 on the CPU: drop --amp {args.amp} and --device {args.device} "
                        f"or use --backend pytorch")
    tile = AUTO_TILE if args.tile == "auto" else args.tile
    if tile is not None and args.overlap * 2 >= tile:
        raise UserError(f"--overlap {args.overlap} must be less than half the tile ({tile} pixels"
                        f"{', --tile auto' if args.tile == 'auto' else ''})")
    device = args.device or ("cpu" if args.backend == "onnxruntime" else None)
    return {"device": device, "amp": args.amp, "backend": args.backend, "tile": args.tile, "overlap": args.overlap}


def tile_size(value: str) -> str | int | None:
    if value in ("auto", "off"):
        return None if value == "off" else value
    if not value.isdigit() or not 16 <= int(value) <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f'must be "auto", "off" or a size in pixels from 16 to {MAX_SIDE}, got {value!r}')
    return int(value)


def run_name(checkpoint: Path) -> str:
    """The name outputs are filed under: the run folder for a run's best.pt or last.pt (runs/demo/mixcl-t/best.pt →
    mixcl-t, last.pt → mixcl-t-last), else the file's stem (MixDehazeNet-s.pth → MixDehazeNet-s)."""
    checkpoint = Path(checkpoint)
    folder = real_path(checkpoint).parent.name
    if not checkpoint.suffix:  # a model folder or a Hugging Face repository id: its name
        return checkpoint.name
    if checkpoint.stem in ("best", "last") and folder:
        return folder if checkpoint.stem == "best" else f"{folder}-last"
    return checkpoint.stem


def real_path(path: Path | str) -> Path:
    """The absolute path with symbolic links followed, as far as they lead (Path.resolve fails on a link loop, which
    the checks name)."""
    return Path(os.path.realpath(path))


def _result_name(path: Path, level: int) -> str:
    """The stem (level 0), the name (1), or the name with its last level − 1 folders (a/x.jpg at 2: a-x.jpg)."""
    if level == 0:
        return path.stem
    return "-".join(real_path(path).parts[-level:]) if level > 1 else path.name


def result_names(inputs: list[Path]) -> dict[Path, str]:
    """A distinct result name per input: its stem; its name where stems collide (x.jpg, x.png → x.jpg, x.png);
    with as many of its folders as it takes where names collide too (a/x.jpg, b/x.jpg → a-x.jpg, b-x.jpg)."""
    levels = dict.fromkeys(inputs, 0)
    while True:
        names = {p: _result_name(p, level) for p, level in levels.items()}
        taken = list(names.values())
        clashing = [p for p, n in names.items() if taken.count(n) > 1]
        if not clashing:
            return names
        if all(levels[p] > len(real_path(p).parts) for p in clashing):
            raise UserError(f"{clashing[0]} is given twice")
        for p in clashing:
            levels[p] += 1


def output_paths(inputs: list[Path], folder: Path, suffix: str) -> dict[Path, Path]:
    """Where each input's result goes: folder/<result name><suffix> (result_names), so that no result overwrites
    another. A result that would overwrite an input is an error: nothing a user owns is overwritten."""
    outputs = {p: folder / f"{name}{suffix}" for p, name in result_names(inputs).items()}
    sources = {real_path(p) for p in inputs}
    clashes = [f"{target} (from {path})" for path, target in outputs.items() if real_path(target) in sources]
    if clashes:
        raise UserError(f"results would overwrite input files: {', '.join(clashes[:5])}; choose another output folder")
    return outputs
