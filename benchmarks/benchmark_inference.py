"""CPU inference: every way this project can run a network, in fp32 and bf16, against the official code, in one run.

    python benchmarks/benchmark_inference.py --official-code ~/src/MixDehazeNet/models
    python benchmarks/benchmark_inference.py --models mixdehazenet-t --sizes 460x620 --paths eager default onnxruntime

Ways (`--paths`), each row in a fresh process (its peak memory is its own), batch 1:
- official: the official MixDehazeNet code (models/MixDehazeNet.py of github.com/AmeryXiong/MixDehazeNet, given by
  --official-code; skipped without it). MixCL rows put the released MixCLDehazeNet fusion in front of it as the
  released code computes it: both attention directions with their H·W × D maps materialised (the reverse one
  is discarded there; this project's TextImageAttention computes the kept one without the map). fp32 only.
- eager: this project's network as plain PyTorch runs it; in bf16 under autocast.
- default: what test.py, predict.py, evaluate_real.py and Dehazer do on the CPU: channels-last, and glibc
  keeping freed memory (inference/dehazer.py); in bf16 (`--amp bf16`, and the default `--amp auto` on a CPU that
  computes bf16 natively) a bf16 copy of the weights under autocast.
- compile: the default, under torch.compile (compilation happens in the warm-up; its time is reported).
- onnxruntime: `--backend onnxruntime` (inference/onnx.py). fp32 only.

Every row gets the same weights (seed 0) and input; `max |Δ|` is its largest output difference to eager fp32's.
Latency is the best of --repeats calls after one warm-up. GMAC/s divides the network's multiply-accumulates
(models/cost.py, torch.utils.flop_counter) by the latency; `% of peak` compares that with the machine's
matrix-multiply rate in the row's precision, measured first (PyTorch, 2048×2048 matrices, best of 10).

A second table times the default path in bf16 against fp32 (`--amp off`) alternately in one process, --rounds
times each, in wall time and in the process's CPU time: on a shared machine the ratio of the two medians, with
the range of the per-round ratios, is steadier than ratios of rows measured minutes apart.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.benchmark_models import _peak_memory_gb, machine, measure_in_fresh_process
from inference import Dehazer
from inference.onnx import example_inputs
from models import build_model
from models.cost import model_cost
from models.mixcl import TextImageAttention
from models.mixdehazenet import convert_official_state_dict
from utils.cli import script_parser, size_pair, whole_number
from utils.precision import cpu_computes_bf16

PATHS = ("official", "eager", "default", "compile", "onnxruntime")
FP32_ONLY = ("official", "onnxruntime")
DTYPES = {"off": torch.float32, "bf16": torch.bfloat16}


def matmul_gmacs(precision: str = "off", size: int = 2048, repeats: int = 10) -> float:
    """The machine's matrix-multiply rate in GMAC/s in fp32 (`off`) or bf16 (best of `repeats`)."""
    a, b = (torch.randn(size, size, dtype=DTYPES[precision]) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return size**3 / best / 1e9


def load_module(path: Path, name: str):
    """A Python file of released code as a module of its own name (its folder is not put on the import path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ReleasedFusion(nn.Module):
    """The released MixCLDehazeNet fusion, as its code computes it (parameter names as released): pixels attend
    over the text's D scalars (q1, k2, v2, postProj_s: the kept direction, TextImageAttention's), and the text's
    D scalars attend over all pixels (k1, v1, q2, postProj_t), a result the released network discards. Both
    H·W × D attention maps are materialised."""

    def __init__(self, ours: TextImageAttention):
        super().__init__()
        p = ours.dim
        self.q1, self.k2, self.v2, self.postProj_s = ours.query, ours.key, ours.value, ours.out_proj  # noqa: N815
        self.k1, self.v1 = nn.Conv2d(3, p, 1), nn.Conv2d(3, p, 1)
        self.q2, self.postProj_t = nn.Conv1d(1, p, 1), nn.Conv1d(p, 1, 1)  # noqa: N815
        self.scale = p**-0.5

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = image.shape
        text = text.reshape(b, 1, -1)
        pixels_q = self.q1(image).flatten(2).transpose(1, 2)                    # B×HW×p
        text_k, text_v = self.k2(text).transpose(1, 2), self.v2(text).transpose(1, 2)  # B×D×p
        attention = F.softmax(pixels_q @ text_k.transpose(1, 2) * self.scale, dim=-1)  # B×HW×D
        image_update = self.postProj_s((attention @ text_v).transpose(1, 2).reshape(b, -1, h, w))
        pixels_k, pixels_v = self.k1(image).flatten(2).transpose(1, 2), self.v1(image).flatten(2).transpose(1, 2)
        reverse = F.softmax(self.q2(text).transpose(1, 2) @ pixels_k.transpose(1, 2) * self.scale, dim=-1)  # B×D×HW
        text_update = self.postProj_t((reverse @ pixels_v).transpose(1, 2))
        return image_update, text_update


class OfficialNetwork(nn.Module):
    """The official MixDehazeNet module with this project's weights; for MixCL the released fusion in front."""

    def __init__(self, ours: nn.Module, official_code: Path):
        super().__init__()
        module = load_module(official_code / "MixDehazeNet.py", "official_mixdehazenet")
        backbone = getattr(ours, "backbone", ours)
        self.fusion = ReleasedFusion(ours.fusion) if hasattr(ours, "fusion") else None
        depths = [len(getattr(backbone, f"stage{i}")) for i in range(1, 6)]
        self.official = module.MixDehazeNet(in_chans=6 if self.fusion else 3, depths=depths)
        # the project's converter renames official keys to its own, passing the tensors through: invert it
        official_state = self.official.state_dict()
        name_of = {id(tensor): name for name, tensor in official_state.items()}
        ours_state = backbone.state_dict()
        self.official.load_state_dict({name_of[id(tensor)]: ours_state[key]
                                       for key, tensor in convert_official_state_dict(official_state).items()})

    def forward(self, x: torch.Tensor, *text: torch.Tensor) -> torch.Tensor:
        if self.fusion is None:
            return self.official(x)
        # the released network pads to 4, fuses, concatenates, then runs the official forward on 6 channels
        h, w = x.shape[-2:]
        padded = self.official.check_image_size(x)
        stem = torch.cat([padded, self.fusion(padded, text[0])[0]], dim=1)
        features = self.official.forward_features(stem)
        gain, bias = torch.split(features, (1, 3), dim=1)
        return (gain * padded - bias + padded)[..., :h, :w]


def runner(path: str, precision: str, model: nn.Module, official_code: Path | None):
    """The call that row times: inputs → output, float32."""
    if path == "official":
        return OfficialNetwork(model, official_code).eval()
    if path == "eager":
        dtype = DTYPES[precision] if precision != "off" else None

        def eager(*inputs: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                return model(*inputs).float()
        return eager
    dehazer = Dehazer(model, device="cpu", amp=precision, backend="onnxruntime" if path == "onnxruntime" else "pytorch",
                      tile=None, photo_priors=False)
    if path == "compile":
        dehazer.network = torch.compile(dehazer.network)
    return dehazer.forward


def measure(path: str, precision: str, name: str, height: int, width: int, repeats: int, reference: Path,
            official_code: Path | None) -> dict:
    torch.manual_seed(0)
    model = build_model(name).eval()
    inputs = tuple(example_inputs(model, height, width, seed=1).values())
    run = runner(path, precision, model, official_code)
    with torch.no_grad():
        started = time.perf_counter()
        output = run(*inputs)
        warm_up = time.perf_counter() - started
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            run(*inputs)
            best = min(best, time.perf_counter() - started)
    if path == "eager" and precision == "off":
        torch.save(output, reference)
    difference = (output - torch.load(reference)).abs().max().item() if reference.exists() else float("nan")
    return {"seconds": best, "warm_up": warm_up, "peak_gb": _peak_memory_gb(torch.device("cpu")),
            "difference": difference}


def alternate(name: str, height: int, width: int, rounds: int) -> dict:
    """The default path in fp32 and in bf16, called alternately `rounds` times each after one warm-up: for wall
    time and for the process's CPU time (all threads; steadier than wall time when other work shares the cores),
    the median of each precision, the ratio of the medians and the range of the per-round ratios."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    inputs = tuple(example_inputs(model, height, width, seed=1).values())
    runs = {precision: Dehazer(copy.deepcopy(model), device="cpu", amp=precision, tile=None, photo_priors=False).forward
            for precision in ("off", "bf16")}
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    seconds = {(clock, precision): [] for clock in clocks for precision in runs}
    with torch.no_grad():
        for _ in range(rounds + 1):  # the first round warms up
            for precision, run in runs.items():
                started = {clock: read() for clock, read in clocks.items()}
                run(*inputs)
                for clock, read in clocks.items():
                    seconds[clock, precision].append(read() - started[clock])
    result = {}
    for clock in clocks:
        off, bf16 = seconds[clock, "off"][1:], seconds[clock, "bf16"][1:]
        ratios = [a / b for a, b in zip(off, bf16)]
        result[clock] = {"off": statistics.median(off), "bf16": statistics.median(bf16), "lowest": min(ratios),
                         "ratio": statistics.median(off) / statistics.median(bf16), "highest": max(ratios)}
    return result


def rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(path, precision) in table order: eager fp32 first (the reference), official only with its code."""
    paths = ["eager"] + [p for p in args.paths if p != "eager" and (p != "official" or args.official_code)]
    return [(path, precision) for path in paths for precision in args.precisions
            if precision == "off" or path not in FP32_ONLY]


def print_latency_table(args: argparse.Namespace, peaks: dict[str, float]) -> None:
    print("| model | size (H×W) | path | precision | latency s | vs default fp32 | warm-up s | peak GB | GMAC/s "
          "| % of peak | max \\|Δ\\| vs eager fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            for height, width in args.sizes:
                gmacs = model_cost(name, (height, width))[1] / 1e9
                reference = Path(folder) / f"{name}-{height}x{width}.pt"
                results = {row: measure_in_fresh_process(measure, *row, name, height, width, args.repeats, reference,
                                                         args.official_code) for row in rows(args)}
                default = results["default", "off"]["seconds"] if ("default", "off") in results else float("nan")
                for (path, precision), r in results.items():
                    rate = gmacs / r["seconds"]
                    difference = "—" if (path, precision) == ("eager", "off") else f"{r['difference']:.1e}"
                    print(f"| {name} | {height}×{width} | {path} | {'fp32' if precision == 'off' else precision} | "
                          f"{r['seconds']:.3f} | {default / r['seconds']:.2f}× | {r['warm_up']:.1f} | {r['peak_gb']:.2f} | "
                          f"{rate:.1f} | {rate / peaks[precision]:.0%} | {difference} |", flush=True)


def print_alternation_table(args: argparse.Namespace) -> None:
    print(f"\nThe default path, bf16 against fp32, alternating in one process ({args.rounds} rounds each; load "
          f"average {' '.join(f'{v:.2f}' for v in os.getloadavg())} before):\n")
    print("| model | size (H×W) | clock | fp32 median s | bf16 median s | speed-up (ratio of medians) | per-round range |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        for height, width in args.sizes:
            for clock, r in measure_in_fresh_process(alternate, name, height, width, args.rounds).items():
                print(f"| {name} | {height}×{width} | {clock} | {r['off']:.3f} | {r['bf16']:.3f} | {r['ratio']:.2f}× | "
                      f"{r['lowest']:.2f}–{r['highest']:.2f}× |", flush=True)


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["mixdehazenet-t", "mixdehazenet-s", "mixcl-s"])
    parser.add_argument("--sizes", nargs="+", type=size_pair(8192), default=["256x256", "460x620"], help="HxW")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=list(DTYPES),
                        help="off (fp32) and bf16 (default: both)")
    parser.add_argument("--official-code", type=Path,
                        help="the models/ folder of a clone of github.com/AmeryXiong/MixDehazeNet (official rows)")
    parser.add_argument("--repeats", type=whole_number(1, 1000), default=3)
    parser.add_argument("--rounds", type=whole_number(0, 1000), default=5, help="rounds of the alternating comparison (0: none)")
    args = parser.parse_args(argv)
    if args.official_code and not (args.official_code / "MixDehazeNet.py").is_file():
        parser.error(f"{args.official_code}: no MixDehazeNet.py there")
    args.precisions = ["off"] + [p for p in args.precisions if p != "off"]  # fp32 rows are the references

    peaks = {precision: measure_in_fresh_process(matmul_gmacs, precision) for precision in args.precisions}
    rates = ", ".join(f"{'fp32' if p == 'off' else p} {rate:.0f} GMAC/s" for p, rate in peaks.items())
    print(f"Machine: {machine()}, bf16 in hardware: {'yes' if cpu_computes_bf16() else 'no'}; matrix-multiply peak "
          f"{rates}; batch 1, best of {args.repeats} after one warm-up, each row in a fresh process\n")
    print_latency_table(args, peaks)
    if args.rounds and "bf16" in args.precisions:
        print_alternation_table(args)


if __name__ == "__main__":
    main()
