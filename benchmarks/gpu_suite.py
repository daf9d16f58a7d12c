"""The GPU measurements that choose this project's GPU defaults, printed as Markdown tables for BENCHMARKS.md.

    python benchmarks/gpu_suite.py            # on a CUDA machine
    python benchmarks/gpu_suite.py --smoke    # the same code paths, tiny, on the CPU (the tests run this)

1. Training: train.py's step (engine.train_step, L1 loss, fused AdamW) of MixCL-S at 256×256, batch 16, in fp32,
   fp16 AMP and bf16 AMP, each eager, channels-last, compiled, and compiled channels-last: images/s, peak
   memory, and the first step's loss. Every row starts from the same weights and batch, so the losses agree up
   to rounding; one that does not points to a broken path.
2. Inference: MixDehazeNet-T/S/B/L at 256×256 and 460×620, batch 1, in fp32, fp16 and bf16 autocast, each in
   the default and the channels-last memory format: latency, peak memory and the largest output difference to
   fp32 in the default format.
3. The largest square input MixCL-S dehazes whole (no tiles) in fp32 and in fp16, to a multiple of 64 pixels.
4. One DDP step: the training step of (1) launched by `torchrun --nproc_per_node 1` (NCCL on CUDA, gloo on the
   CPU), whose first loss must equal the plain step's (a difference is flagged).

Each training row, each network and size of (2) and each search of (3) runs in a fresh process (peak memory is
its own: PyTorch's allocator peak on CUDA, reset between the rows of (2)); a failure is printed and the suite
goes on. `--sections` and `--training-rows` run parts of it. --smoke
runs every path on the CPU at toy sizes in this process, compiling with torch.compile's "eager" backend
(graph capture without code generation), so that the suite cannot rot while no GPU is at hand; its figures
mean nothing. On the CPU fp16 AMP training falls back to fp32, as train.py does.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from benchmarks.benchmark_models import _peak_memory_gb, machine, measure_in_fresh_process, median_seconds
from benchmarks.benchmark_training import measure_step
from inference.onnx import example_inputs
from models import build_model

PRECISIONS = ("fp32", "fp16", "bf16")
TRAINING_SETTINGS = {"eager": {}, "channels-last": {"channels_last": True}, "compile": {"compile": True},
                     "compile + channels-last": {"compile": True, "channels_last": True}}
AUTOCAST = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def suite_sizes(smoke: bool) -> dict:
    if smoke:
        return {"train_model": "mixcl-t", "train_size": 32, "train_batch": 2, "warmup": 1, "repeats": 1,
                "infer_models": ["mixdehazenet-t", "mixdehazenet-s", "mixdehazenet-b", "mixdehazenet-l"],
                "infer_sizes": [(36, 44)], "infer_repeats": 1, "largest": ("mixcl-t", 64, 128)}
    return {"train_model": "mixcl-s", "train_size": 256, "train_batch": 16, "warmup": 3, "repeats": 10,
            "infer_models": ["mixdehazenet-t", "mixdehazenet-s", "mixdehazenet-b", "mixdehazenet-l"],
            "infer_sizes": [(256, 256), (460, 620)], "infer_repeats": 20, "largest": ("mixcl-s", 256, 16384)}


def network_inputs(model: torch.nn.Module, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in example_inputs(model, height, width, seed=1).values())


def measure_inference(name: str, height: int, width: int, repeats: int) -> list[dict]:
    """Every precision and memory format of one network at one size, in one process: latency, peak memory
    (reset between rows) and the largest output difference to fp32 in the default format."""
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
        for precision in PRECISIONS:
            @torch.no_grad()
            def run(precision=precision, inputs=inputs) -> torch.Tensor:
                with torch.autocast(device.type, dtype=AUTOCAST[precision], enabled=precision != "fp32"):
                    return model(*inputs).float()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            output = run()  # warm-up: cuDNN picks its algorithms
            seconds = median_seconds(run, device, repeats)
            reference = output if reference is None else reference
            rows.append({"precision": precision, "channels_last": channels_last, "seconds": seconds,
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


def measure_largest_input(name: str, precision: str, low: int, high: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(name).eval().to(device)

    @torch.no_grad()
    def fits(side: int) -> bool:
        try:
            with torch.autocast(device.type, dtype=AUTOCAST[precision], enabled=precision != "fp32"):
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


SECTIONS = ("training", "inference", "largest", "ddp")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every path at toy sizes on the CPU, in this process")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="the parts to run (default: all)")
    parser.add_argument("--training-rows", nargs="+", metavar="PRECISION:SETTING",
                        help="only these training rows, e.g. fp16:compile bf16:eager (default: all)")
    parser.add_argument("--ddp-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = {f"{precision}:{setting}" for precision in PRECISIONS for setting in TRAINING_SETTINGS}
    if unknown := set(args.training_rows or ()) - rows:
        parser.error(f"unknown --training-rows {sorted(unknown)}: choose from {sorted(rows)}")
    if args.ddp_worker:  # inside torchrun: one step, its result on stdout
        print("RESULT " + json.dumps(measure_step(*json.loads(args.ddp_worker))), flush=True)
        return {}
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: this suite measures a GPU (--smoke runs its code paths on the CPU)")
    sizes = suite_sizes(args.smoke)
    results: dict = {"training": {}, "inference": {}, "largest": {}}
    original_compile = torch.compile
    if args.smoke:  # capture graphs without generating code: the code path, not the speed
        torch.compile = partial(original_compile, backend="eager")

    def measure(function, *arguments):
        """In the smoke run: in this process, failures raised. On the GPU: in a fresh process, and a failure
        is printed and the suite goes on (None), so that one broken path costs none of the others."""
        if args.smoke:
            return function(*arguments)
        try:
            return measure_in_fresh_process(function, *arguments)
        except RuntimeError as e:
            print(f"\n{e}\n", flush=True)
            return None

    try:
        print(f"Machine: {machine()}{' (smoke run: the figures mean nothing)' if args.smoke else ''}\n")
        model, size, batch = sizes["train_model"], sizes["train_size"], sizes["train_batch"]
        if "training" in args.sections:
            print(f"Training: {model}, {size}×{size}, batch {batch}; median of {sizes['repeats']} steps after "
                  f"{sizes['warmup']} warm-up steps\n")
            print("| precision | setting | images/s | peak GB | warm-up s | first loss |")
            print("|---|---|---|---|---|---|")
            for precision in PRECISIONS:
                for setting, options in TRAINING_SETTINGS.items():
                    if args.training_rows and f"{precision}:{setting}" not in args.training_rows:
                        continue
                    r = measure(measure_step, model, size, batch, sizes["warmup"], sizes["repeats"],
                                "off" if precision == "fp32" else precision, options.get("channels_last", False),
                                options.get("compile", False))
                    if r is not None:
                        results["training"][precision, setting] = r
                        print(f"| {precision} | {setting} | {r['images_per_second']:.2f} | {r['peak_gb']:.2f} | "
                              f"{r['warmup_seconds']:.1f} | {r['first_loss']:.6f} |", flush=True)

        if "inference" in args.sections:
            print(f"\nInference: batch 1; median of {sizes['infer_repeats']} after one warm-up; max |Δ| against fp32 "
                  f"in the default format\n")
            print("| model | size (H×W) | precision | format | ms | peak GB | max \\|Δ\\| |")
            print("|---|---|---|---|---|---|---|")
            for name in sizes["infer_models"]:
                for height, width in sizes["infer_sizes"]:
                    for r in measure(measure_inference, name, height, width, sizes["infer_repeats"]) or []:
                        results["inference"][name, (height, width), r["precision"], r["channels_last"]] = r
                        print(f"| {name} | {height}×{width} | {r['precision']} | "
                              f"{'channels-last' if r['channels_last'] else 'default'} | {r['seconds'] * 1000:.2f} | "
                              f"{r['peak_gb']:.2f} | {r['difference']:.1e} |", flush=True)

        if "largest" in args.sections:
            name, low, high = sizes["largest"]
            print(f"\nLargest square input {name} dehazes whole (multiple of 64, searched in [{low}, {high}]):\n")
            print("| precision | side | megapixels |")
            print("|---|---|---|")
            for precision in ("fp32", "fp16"):
                r = measure(measure_largest_input, name, precision, low, high)
                if r is not None:
                    side = results["largest"][precision] = r["side"]
                    print(f"| {precision} | {side} | {side * side / 1e6:.1f} |", flush=True)

        if "ddp" in args.sections:
            plain = results["training"].get(("fp32", "eager")) or measure(  # the fp32 eager row of (1)
                measure_step, model, size, batch, sizes["warmup"], sizes["repeats"], "off", False, False)
            try:
                r = results["ddp"] = ddp_step(sizes)
            except RuntimeError as e:
                if args.smoke:
                    raise
                print(f"\n{e}\n", flush=True)
            else:
                agrees = plain is not None and abs(r["first_loss"] - plain["first_loss"]) <= 1e-6 * plain["first_loss"]
                print(f"\nDDP (torchrun, 1 process, {'NCCL' if torch.cuda.is_available() else 'gloo'}): under DDP "
                      f"{r['ddp']}, {r['images_per_second']:.2f} images/s, first loss {r['first_loss']:.6f} (plain "
                      f"step {plain['first_loss'] if plain else float('nan'):.6f}"
                      f"{'' if agrees else ': DIFFERENT, the DDP path is broken'})", flush=True)
    finally:
        torch.compile = original_compile
    return results


if __name__ == "__main__":
    main()
