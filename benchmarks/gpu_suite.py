"""The GPU measurements that choose this project's GPU defaults, printed as Markdown tables for BENCHMARKS.md.

    python benchmarks/gpu_suite.py            # on a CUDA machine
    python benchmarks/gpu_suite.py --smoke    # the same code paths, tiny, on the CPU (the tests run this)

1. Training: train.py's step (engine.train_step, L1 loss, fused AdamW) of MixCL-S at 256×256, batch 16, with amp
   off (fp32), fp16 and bf16, each eager, channels-last, compiled, and compiled channels-last: images/s, peak
   memory, and the first step's loss. Every row starts from the same weights and batch, so the losses agree up
   to rounding; one that does not points to a broken path.
2. Inference: MixDehazeNet-T/S/B/L at 256×256 and 460×620, batch 1, with amp off, fp16 and bf16, each in the
   default and the channels-last memory format: latency, peak memory and the largest output difference to amp
   off in the default format.
3. The largest square input MixCL-S dehazes whole (no tiles) with amp off and fp16, to a multiple of 64 pixels.
4. One DDP step: the training step of (1) launched by `torchrun --nproc_per_node 1` (NCCL on CUDA, gloo on the
   CPU), whose first loss must equal the plain step's (a difference is flagged).

Each training row, each network and size of (2) and each search of (3) runs in a fresh process (peak memory is
its own: PyTorch's allocator peak on CUDA, reset between the rows of (2)); a failure is printed and the suite
goes on. `--sections` and `--training-rows` run parts of it. --smoke runs every path on the CPU at toy sizes in
this process, compiling with torch.compile's "eager" backend (graph capture without code generation) inside its
measurements only, so that the suite cannot rot while no GPU is at hand; its figures mean nothing. On the CPU
fp16 runs in fp32 (utils/precision.py), as train.py and the scripts do.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.benchmark_models import _peak_memory_gb, machine, measure_in_fresh_process, median_seconds
from benchmarks.benchmark_training import measure_step
from models import DehazingNetwork, build_model
from utils.cli import script_parser
from utils.precision import PRECISIONS, autocast_dtype

TRAINING_SETTINGS = {"eager": {}, "channels-last": {"channels_last": True}, "compile": {"compile": True},
                     "compile + channels-last": {"compile": True, "channels_last": True}}
SECTIONS = ("training", "inference", "largest", "ddp")


def suite_sizes(smoke: bool) -> dict:
    if smoke:
        return {"train_model": "mixcl-t", "train_size": 32, "train_batch": 2, "warmup": 1, "repeats": 1,
                "infer_models": ["mixdehazenet-t", "mixdehazenet-s", "mixdehazenet-b", "mixdehazenet-l"],
                "infer_sizes": [(36, 44)], "infer_repeats": 1, "largest": ("mixcl-t", 64, 128)}
    return {"train_model": "mixcl-s", "train_size": 256, "train_batch": 16, "warmup": 3, "repeats": 10,
            "infer_models": ["mixdehazenet-t", "mixdehazenet-s", "mixdehazenet-b", "mixdehazenet-l"],
            "infer_sizes": [(256, 256), (460, 620)], "infer_repeats": 20, "largest": ("mixcl-s", 256, 16384)}


def network_inputs(model: DehazingNetwork, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in model.example_inputs(1, height, width, torch.Generator().manual_seed(1)))


def measure_inference(name: str, height: int, width: int, repeats: int) -> list[dict]:
    """Every amp setting and memory format of one network at one size, in one process: latency, peak memory
    (reset between rows) and the largest output difference to amp off in the default format."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(name).eval().to(device)
    rows, reference = [], None
    for channels_last in (False, True):
        inputs = network_inputs(model, height, width, device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
            inputs = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
        for amp in PRECISIONS:
            dtype = autocast_dtype(amp, device.type)

            @torch.no_grad()
            def run(dtype=dtype, inputs=inputs) -> torch.Tensor:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    return model(*inputs).float()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            output = run()  # warm-up: cuDNN picks its algorithms
            seconds = median_seconds(run, device, repeats)
            reference = output if reference is None else reference
            rows.append({"amp": amp, "channels_last": channels_last, "seconds": seconds,
                         "peak_gb": _peak_memory_gb(device), "difference": (output - reference).abs().max().item()})
            del output  # not held through the next row's peak
    return rows


def largest_side(fits: Callable[[int], bool], low: int, high: int, multiple: int = 64) -> int:
    """The largest multiple of `multiple` in [low, high] for which `fits` holds (it holds for every smaller
    side and fails above), or 0 when even `low` fails."""
    low, high = -(-low // multiple), high // multiple
    best = 0
    while low <= high:
        middle = (low + high) // 2
        if fits(middle * multiple):
            best, low = middle * multiple, middle + 1
        else:
            high = middle - 1
    return best


def measure_largest_input(name: str, amp: str, low: int, high: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(name).eval().to(device)
    dtype = autocast_dtype(amp, device.type)

    @torch.no_grad()
    def fits(side: int) -> bool:
        try:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                model(*network_inputs(model, side, side, device))
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return {"side": largest_side(fits, low, high)}


def ddp_step(sizes: dict) -> dict:
    """The training step under `torchrun --nproc_per_node 1`, in a child process."""
    arguments = json.dumps([sizes["train_model"], sizes["train_size"], sizes["train_batch"], sizes["warmup"],
                            sizes["repeats"]])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               str(Path(__file__).resolve()), "--ddp-worker", arguments]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    results = [line.removeprefix("RESULT ") for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not results:
        raise RuntimeError(f"the torchrun DDP step failed:\n{done.stderr[-3000:]}")
    return json.loads(results[0])


@contextlib.contextmanager
def graph_capture_only():
    """Inside the block, torch.compile uses its "eager" backend: graphs are captured, no code is generated (the
    smoke run's code path, not its speed). The original is restored on leaving."""
    original = torch.compile
    torch.compile = functools.partial(original, backend="eager")
    try:
        yield
    finally:
        torch.compile = original


class Measurer:
    """Runs one measurement. Smoke run: in this process with compilation reduced to graph capture, failures
    raised. GPU run: in a fresh process; a failure is printed and the suite goes on (None), so that one broken
    path costs none of the others."""

    def __init__(self, smoke: bool):
        self.smoke = smoke

    def __call__(self, function, *arguments):
        if self.smoke:
            with graph_capture_only():
                return function(*arguments)
        try:
            return measure_in_fresh_process(function, *arguments)
        except RuntimeError as e:
            print(f"\n{e}\n", flush=True)
            return None


def training_section(measure: Measurer, sizes: dict, rows: list[str] | None) -> dict:
    model, size, batch = sizes["train_model"], sizes["train_size"], sizes["train_batch"]
    print(f"Training: {model}, {size}×{size}, batch {batch}; median of {sizes['repeats']} steps after "
          f"{sizes['warmup']} warm-up steps\n")
    print("| amp | setting | images/s | peak GB | warm-up s | first loss |")
    print("|---|---|---|---|---|---|")
    results = {}
    for amp in PRECISIONS:
        for setting, options in TRAINING_SETTINGS.items():
            if rows and f"{amp}:{setting}" not in rows:
                continue
            r = measure(measure_step, model, size, batch, sizes["warmup"], sizes["repeats"], amp,
                        options.get("channels_last", False), options.get("compile", False))
            if r is not None:
                results[amp, setting] = r
                print(f"| {amp} | {setting} | {r['images_per_second']:.2f} | {r['peak_gb']:.2f} | "
                      f"{r['warmup_seconds']:.1f} | {r['first_loss']:.6f} |", flush=True)
    return results


def inference_section(measure: Measurer, sizes: dict) -> dict:
    print(f"\nInference: batch 1; median of {sizes['infer_repeats']} after one warm-up; max |Δ| against amp off in "
          f"the default format\n")
    print("| model | size (H×W) | amp | format | ms | peak GB | max \\|Δ\\| |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for name in sizes["infer_models"]:
        for height, width in sizes["infer_sizes"]:
            for r in measure(measure_inference, name, height, width, sizes["infer_repeats"]) or []:
                results[name, (height, width), r["amp"], r["channels_last"]] = r
                print(f"| {name} | {height}×{width} | {r['amp']} | {'channels-last' if r['channels_last'] else 'default'} "
                      f"| {r['seconds'] * 1000:.2f} | {r['peak_gb']:.2f} | {r['difference']:.1e} |", flush=True)
    return results


def largest_section(measure: Measurer, sizes: dict) -> dict:
    name, low, high = sizes["largest"]
    print(f"\nLargest square input {name} dehazes whole (multiple of 64, searched in [{low}, {high}]):\n")
    print("| amp | side | megapixels |")
    print("|---|---|---|")
    results = {}
    for amp in ("off", "fp16"):
        r = measure(measure_largest_input, name, amp, low, high)
        if r is not None:
            side = results[amp] = r["side"]
            print(f"| {amp} | {side} | {side * side / 1e6:.1f} |", flush=True)
    return results


def ddp_section(measure: Measurer, sizes: dict) -> dict | None:
    """The DDP step beside the plain step, measured in this same call, so that their speeds compare."""
    plain = measure(measure_step, sizes["train_model"], sizes["train_size"], sizes["train_batch"], sizes["warmup"],
                    sizes["repeats"], "off", False, False)
    try:
        r = ddp_step(sizes)
    except RuntimeError as e:
        if measure.smoke:
            raise
        print(f"\n{e}\n", flush=True)
        return None
    agrees = plain is not None and abs(r["first_loss"] - plain["first_loss"]) <= 1e-6 * plain["first_loss"]
    print(f"\nDDP (torchrun, 1 process, {'NCCL' if torch.cuda.is_available() else 'gloo'}) against the plain step, "
          f"amp off: under DDP {r['ddp']}, {r['images_per_second']:.2f} against {plain['images_per_second']:.2f} "
          f"images/s, first loss {r['first_loss']:.6f} against {plain['first_loss']:.6f}"
          f"{'' if agrees else ': DIFFERENT, the DDP path is broken'}", flush=True)
    return r | {"plain": plain}


def parse_args(argv=None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument("--smoke", action="store_true", help="every path at toy sizes on the CPU, in this process")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="the parts to run (default: all)")
    parser.add_argument("--training-rows", nargs="+", metavar="AMP:SETTING",
                        help="only these training rows, e.g. fp16:compile bf16:eager (default: all)")
    parser.add_argument("--ddp-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = {f"{amp}:{setting}" for amp in PRECISIONS for setting in TRAINING_SETTINGS}
    if unknown := set(args.training_rows or ()) - rows:
        parser.error(f"unknown --training-rows {sorted(unknown)}: choose from {sorted(rows)}")
    if not args.ddp_worker and not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: this suite measures a GPU (--smoke runs its code paths on the CPU)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.ddp_worker:  # inside torchrun: one step, its result on stdout
        print("RESULT " + json.dumps(measure_step(*json.loads(args.ddp_worker))), flush=True)
        return {}
    sizes, measure = suite_sizes(args.smoke), Measurer(args.smoke)
    print(f"Machine: {machine()}{' (smoke run: the figures mean nothing)' if args.smoke else ''}\n")
    sections = {"training": lambda: training_section(measure, sizes, args.training_rows),
                "inference": lambda: inference_section(measure, sizes),
                "largest": lambda: largest_section(measure, sizes),
                "ddp": lambda: ddp_section(measure, sizes)}
    return {name: section() for name, section in sections.items() if name in args.sections}


if __name__ == "__main__":
    main()
