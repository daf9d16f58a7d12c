"""Train-step throughput, inference latency and peak memory of MixDehazeNet variants.

    python benchmarks/benchmark_mixdehazenet.py                      # T and S at 256×256 and 460×620 (SOTS indoor)
    python benchmarks/benchmark_mixdehazenet.py --models t --sizes 256x256 --repeats 5

Each measurement runs in a fresh process, so that peak memory belongs to it alone: on CUDA the peak of
torch's allocator, on the CPU the peak resident set size of the process (model, activations, runtime).
Prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from models import build_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB


def measure(task: str, model_name: str, height: int, width: int, batch: int, repeats: int, amp: str) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    model = build_model(model_name).to(device)
    x = torch.rand(batch, 3, height, width, device=device) * 2 - 1
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)  # noqa: E731
    if task == "train":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def step():
            with autocast():
                loss = (model(x).float() - x).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast():
                model(x)

    step()  # warm-up: allocator, cuDNN autotuning
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"seconds": seconds, "images_per_second": batch / seconds, "peak_gb": _peak_memory_gb(device)}


def _worker(queue, *args):
    queue.put(measure(*args))


def measure_in_fresh_process(*args) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(queue, *args))
    process.start()
    result = queue.get()
    process.join()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["t", "s"], help="variants: t s b l")
    parser.add_argument("--sizes", nargs="+", default=["256x256", "460x620"], help="HxW")
    parser.add_argument("--train-batch", type=int, default=None, help="default: 16 on GPU, 2 on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", choices=["off", "fp16", "bf16"], default="off", help="autocast (CUDA)")
    args = parser.parse_args()
    batch = args.train_batch or (16 if torch.cuda.is_available() else 2)

    print(f"Machine: {machine()}; precision {args.amp}; median of {args.repeats} after one warm-up\n")
    print("| model | size (H×W) | train batch | train images/s | train peak GB | inference ms (batch 1) | inference peak GB |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.models:
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            name = f"mixdehazenet-{variant}"
            trained = measure_in_fresh_process("train", name, h, w, batch, args.repeats, args.amp)
            inferred = measure_in_fresh_process("infer", name, h, w, 1, args.repeats, args.amp)
            print(f"| {name} | {h}×{w} | {batch} | {trained['images_per_second']:.2f} | {trained['peak_gb']:.2f} "
                  f"| {inferred['seconds'] * 1000:.0f} | {inferred['peak_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
