"""Train-step throughput, inference latency and peak memory of registered models.

    python benchmarks/benchmark_models.py                 # MixDehazeNet T and S at 256×256 and 460×620 (SOTS indoor)
    python benchmarks/benchmark_models.py --models mixdehazenet-t mixcl-t --sizes 1024x1024 --tasks infer

Each measurement runs in a fresh process, so that peak memory belongs to it alone: on CUDA the peak of
torch's allocator, on the CPU the peak resident set size of the process (model, activations, runtime);
"above start" subtracts what the process held before the first forward pass (runtime, model, input).
Models after the first are also compared with the first, as ratios from the same run.
Prints Markdown tables for BENCHMARKS.md.
"""
from __future__ import annotations

import multiprocessing as mp
import platform
import queue as queue_module
import resource
import statistics
import time
import traceback
from pathlib import Path

import torch

from models import build_model
from utils.cli import script_parser, size_pair, whole_number
from utils.precision import autocast_dtype


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB


def median_seconds(step, device: torch.device, repeats: int) -> float:
    """Median wall time of `step()` over `repeats` calls, waiting for the GPU around each."""
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(task: str, model_name: str, height: int, width: int, batch: int, repeats: int, amp: str) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    model = build_model(model_name).to(device)
    inputs = tuple(t.to(device) for t in model.example_inputs(batch, height, width))
    x = inputs[0]
    start_gb = _peak_memory_gb(device)
    dtype = autocast_dtype(amp, device.type)
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)  # noqa: E731
    if task == "train":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def step():
            with autocast():
                loss = (model(*inputs).float() - x).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast():
                model(*inputs)

    step()  # warm-up: allocator, cuDNN autotuning
    seconds = median_seconds(step, device, repeats)
    peak_gb = _peak_memory_gb(device)
    return {"seconds": seconds, "images_per_second": batch / seconds, "peak_gb": peak_gb, "above_start_gb": peak_gb - start_gb}


def _worker(queue, function, *args):
    try:
        queue.put((True, function(*args)))
    except BaseException:
        queue.put((False, traceback.format_exc()))


def measure_in_fresh_process(function, *args):
    """`function(*args)` in a new process, so that its peak memory is its own; its failure (an exception, or a
    crash) is raised here as a RuntimeError rather than waited on."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(queue, function, *args))
    process.start()
    while True:
        try:
            succeeded, result = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if not process.is_alive() and queue.empty():
                process.join()
                raise RuntimeError(f"{function.__name__}{args} exited without a result (exit code "
                                   f"{process.exitcode})") from None
    process.join()
    if not succeeded:
        raise RuntimeError(f"{function.__name__}{args} failed:\n{result}")
    return result


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or "CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["mixdehazenet-t", "mixdehazenet-s"])
    parser.add_argument("--sizes", nargs="+", type=size_pair(8192), default=["256x256", "460x620"], help="HxW")
    parser.add_argument("--tasks", nargs="+", choices=["train", "infer"], default=["train", "infer"])
    parser.add_argument("--train-batch", type=whole_number(1, 1024), default=None, help="default: 16 on GPU, 2 on CPU")
    parser.add_argument("--repeats", type=whole_number(1, 1000), default=3)
    parser.add_argument("--amp", choices=["off", "fp16", "bf16"], default="off", help="autocast (CUDA)")
    args = parser.parse_args(argv)
    batches = {"train": args.train_batch or (16 if torch.cuda.is_available() else 2), "infer": 1}

    print(f"Machine: {machine()}; precision {args.amp}; median of {args.repeats} after one warm-up\n")
    print("| model | size (H×W) | task | batch | images/s | ms per step | peak GB | peak GB above start |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for h, w in args.sizes:
        size = f"{h}x{w}"
        for name in args.models:
            for task in args.tasks:
                r = results[name, size, task] = measure_in_fresh_process(measure, task, name, h, w, batches[task],
                                                                         args.repeats, args.amp)
                print(f"| {name} | {h}×{w} | {task} | {batches[task]} | {r['images_per_second']:.2f} | "
                      f"{r['seconds'] * 1000:.0f} | {r['peak_gb']:.2f} | {r['above_start_gb']:.2f} |", flush=True)
    if len(args.models) > 1:
        first = args.models[0]
        print(f"\n| model | size | task | extra time vs {first} | extra peak vs {first} | extra peak above start |")
        print("|---|---|---|---|---|---|")
        for (name, size, task), r in results.items():
            if name != first:
                base = results[first, size, task]
                print(f"| {name} | {size} | {task} | {r['seconds'] / base['seconds'] - 1:+.1%} | "
                      f"{r['peak_gb'] / base['peak_gb'] - 1:+.1%} | "
                      f"{r['above_start_gb'] / base['above_start_gb'] - 1:+.1%} |")


if __name__ == "__main__":
    main()
