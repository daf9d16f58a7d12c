"""Training throughput of one model under the speed settings of train.py: eager fp32, mixed precision,
channels-last memory format, torch.compile, and their combinations.

    python benchmarks/benchmark_training.py                                   # MixCL-S, 256×256, batch 16
    python benchmarks/benchmark_training.py --model mixdehazenet-t --batch 4 --settings eager channels_last
    python benchmarks/benchmark_training.py --model mixcl-t --size 64 --batch 8 --alternate 6   # the demo's step

A step is train.py's own step (engine.train_step): forward (autocast when mixed), L1 loss, backward, fused
AdamW step, on a run built by engine.build_run from the setting's config. Each setting runs in a fresh
process (peak memory is its own); compilation happens in the warm-up steps, which are not timed.
Speed-ups are ratios to the first setting measured in the same run, `stock`: eager fp32 as
plain PyTorch runs it. Every other setting starts from train.py's defaults, which on the CPU add two things
(`stock+…` rows take one each): DilatedDepthwiseConv2d's backward made of forward convolutions
(models/layers.py) and glibc keeping freed memory for reuse (utils/cpu_memory.py). On CUDA neither
applies, and `stock` equals `eager`. Mixed precision is bf16 autocast on the CPU (fp16 has no fast CPU
path) and fp16 with a GradScaler on CUDA unless --amp says so.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks.benchmark_models import _peak_memory_gb, machine, measure_in_fresh_process, median_seconds
from engine import build_run, finish_process, start_process, train_step
from losses import build_loss
from models.layers import DilatedDepthwiseConv2d
from utils.cli import script_parser, whole_number
from utils.config import config_from_dict
from utils.cpu_memory import keep_freed_memory as keep_freed_cpu_memory

# name: what differs from train.py's defaults (see above)
SETTINGS = {
    "stock": dict(fast_depthwise_backward=False, keep_freed_memory=False),
    "stock+fast_depthwise_backward": dict(keep_freed_memory=False),
    "stock+keep_freed_memory": dict(fast_depthwise_backward=False),
    "eager": dict(),
    "amp": dict(amp=True),
    "channels_last": dict(channels_last=True),
    "compile": dict(compile=True),
    "compile+channels_last": dict(compile=True, channels_last=True),
    "amp+channels_last": dict(amp=True, channels_last=True),
    "amp+compile+channels_last": dict(amp=True, compile=True, channels_last=True),
}


def measure(setting: str, model_name: str, size: int, batch: int, warmup: int, repeats: int, amp: str) -> dict:
    options = SETTINGS[setting]
    return measure_step(model_name, size, batch, warmup, repeats, amp=amp if options.get("amp") else "off",
                        channels_last=options.get("channels_last", False), compile=options.get("compile", False),
                        fast_depthwise_backward=options.get("fast_depthwise_backward", True),
                        keep_freed_memory=options.get("keep_freed_memory", True))


def measure_step(model_name: str, size: int, batch: int, warmup: int, repeats: int, amp: str = "off",
                 channels_last: bool = False, compile: bool = False, fast_depthwise_backward: bool = True,
                 keep_freed_memory: bool = True) -> dict:
    """train.py's step under these settings, from seed 0 on one fixed batch: images/s, the median step time,
    the warm-up time, peak memory, the first step's loss (equal across settings up to rounding), and whether
    the step ran under DDP (launched by torchrun)."""
    process = start_process(seed=0)
    if keep_freed_memory and process.device.type == "cpu":
        keep_freed_cpu_memory()  # as train.py does on the CPU (this runs in a process of its own)
    config = config_from_dict({"model": model_name, "loss": [{"name": "l1"}], "train": {
        "batch_size": batch, "lr": 1e-4, "amp": amp, "channels_last": channels_last, "compile": compile}})
    run = build_run(config, build_loss(config.loss).to(process.device), {}, process)
    for module in run.model.modules():
        if isinstance(module, DilatedDepthwiseConv2d):
            module.fast_cpu_backward = fast_depthwise_backward
    micro_batches = [step_batch(run.model, batch, size)]

    def step():
        return train_step(run, micro_batches)[0]

    started = time.perf_counter()
    first_loss = step()
    for _ in range(warmup - 1):
        step()
    warmup_seconds = time.perf_counter() - started
    seconds = median_seconds(step, process.device, repeats)
    finish_process(process)
    return {"images_per_second": batch / seconds, "seconds": seconds, "warmup_seconds": warmup_seconds,
            "peak_gb": _peak_memory_gb(process.device), "first_loss": first_loss, "ddp": run.ddp is not None}


def alternate(model_name: str, size: int, batch: int, rounds: int, amp: str) -> dict:
    """train.py's default step in fp32 and under `amp`, alternately in one process, `rounds` times each after one
    warm-up round: for wall time and for the process's CPU time (all threads; steadier than wall time when other
    work shares the cores), the medians and the per-round ratios fp32 / amp."""
    process = start_process(seed=0)
    if process.device.type == "cpu":
        keep_freed_cpu_memory()
    runs = {}
    for precision in ("off", amp):
        config = config_from_dict({"model": model_name, "loss": [{"name": "l1"}],
                                   "train": {"batch_size": batch, "lr": 1e-4, "amp": precision}})
        run = build_run(config, build_loss(config.loss).to(process.device), {}, process)
        runs[precision] = run, [step_batch(run.model, batch, size)]
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    seconds = {(clock, precision): [] for clock in clocks for precision in runs}
    for _ in range(rounds + 1):
        for precision, (run, micro_batches) in runs.items():
            started = {clock: read() for clock, read in clocks.items()}
            train_step(run, micro_batches)
            for clock, read in clocks.items():
                seconds[clock, precision].append(read() - started[clock])
    finish_process(process)
    result = {}
    for clock in clocks:
        fp32, mixed = seconds[clock, "off"][1:], seconds[clock, amp][1:]
        ratios = [a / b for a, b in zip(fp32, mixed)]
        result[clock] = {"off": statistics.median(fp32), amp: statistics.median(mixed), "lowest": min(ratios),
                         "ratio": statistics.median(fp32) / statistics.median(mixed), "highest": max(ratios)}
    return result


def step_batch(model, batch: int, size: int) -> dict:
    """The fixed batch every measured step trains on: random hazy images (seed 1), their mirror image as the
    target, and a prior of the network's own kind when it takes one."""
    x, *prior = model.example_inputs(batch, size, size, torch.Generator().manual_seed(1))
    return {"hazy": x, "gt": x.flip(-1)} | ({"prior": prior[0]} if prior else {})


def print_alternation(args: argparse.Namespace, amp: str) -> None:
    print(f"Machine: {machine()}; {args.model}, {args.size}×{args.size}, batch {args.batch}; fp32 and {amp} alternately, "
          f"{args.alternate} rounds after one warm-up; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print(f"| clock | fp32 s per step | {amp} s per step | speed-up (ratio of medians) | per-round range |")
    print("|---|---|---|---|---|")
    for clock, r in measure_in_fresh_process(alternate, args.model, args.size, args.batch, args.alternate, amp).items():
        print(f"| {clock} | {r['off']:.3f} | {r[amp]:.3f} | {r['ratio']:.2f}× | {r['lowest']:.2f}–{r['highest']:.2f}× |")


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--model", default="mixcl-s")
    parser.add_argument("--size", type=whole_number(16, 8192), default=256)
    parser.add_argument("--batch", type=whole_number(1, 1024), default=16)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--warmup", type=whole_number(1, 1000), default=2,
                        help="untimed steps, at least 1 (compilation happens here)")
    parser.add_argument("--repeats", type=whole_number(1, 1000), default=3)
    parser.add_argument("--amp", choices=["fp16", "bf16"], default=None, help="default: fp16 on CUDA, bf16 on CPU")
    parser.add_argument("--alternate", type=whole_number(1, 1000), metavar="ROUNDS",
                        help="instead: train.py's default step in fp32 and in mixed precision, alternately in one "
                             "process, ROUNDS times each")
    args = parser.parse_args(argv)
    amp = args.amp or ("fp16" if torch.cuda.is_available() else "bf16")
    if args.alternate:
        print_alternation(args, amp)
        return
    settings = ["stock"] + [s for s in args.settings if s != "stock"]

    print(f"Machine: {machine()}; {args.model}, {args.size}×{args.size}, batch {args.batch}, mixed precision = {amp}; "
          f"median of {args.repeats} steps after {args.warmup} warm-up steps\n")
    print("| setting | images/s | s per step | speed-up vs stock | warm-up s | peak GB |")
    print("|---|---|---|---|---|---|")
    baseline = None
    for setting in settings:
        r = measure_in_fresh_process(measure, setting, args.model, args.size, args.batch, args.warmup, args.repeats, amp)
        baseline = baseline or r["images_per_second"]
        print(f"| {setting} | {r['images_per_second']:.3f} | {r['seconds']:.2f} | {r['images_per_second'] / baseline:.2f}× "
              f"| {r['warmup_seconds']:.0f} | {r['peak_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
