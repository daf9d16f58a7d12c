"""CPU inference: every way this project can run a network, against the official code, in one run.

    python benchmarks/benchmark_inference.py --official-code ~/src/MixDehazeNet/models
    python benchmarks/benchmark_inference.py --models mixdehazenet-t --sizes 460x620 --paths eager default onnxruntime

Ways (`--paths`), each row in a fresh process (its peak memory is its own), batch 1, fp32:
- official: the official MixDehazeNet code (models/MixDehazeNet.py of github.com/AmeryXiong/MixDehazeNet, given by
  --official-code; skipped without it). MixCL rows put the released MixCLDehazeNet fusion in front of it as the
  released code computes it: both attention directions with their H·W × D maps materialised (the reverse one
  is discarded there; this project's TextImageAttention computes the kept one without the map).
- eager: this project's network as plain PyTorch runs it.
- default: what test.py, predict.py, evaluate_real.py and Dehazer do on the CPU: channels-last, and glibc
  keeping freed memory (inference/dehazer.py).
- compile: the default, under torch.compile (compilation happens in the warm-up; its time is reported).
- onnxruntime: `--backend onnxruntime` (inference/onnx.py).

Every row gets the same weights (seed 0) and input; `max |Δ|` is its largest output difference to eager's.
Latency is the best of --repeats calls after one warm-up. GMAC/s divides the network's multiply-accumulates
(models/cost.py, torch.utils.flop_counter) by the latency; `% of peak` compares that with the machine's fp32
matrix-multiply rate, measured first (PyTorch, 2048×2048 matrices, best of 10).
"""
from __future__ import annotations

import importlib.util
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

PATHS = ("official", "eager", "default", "compile", "onnxruntime")


def matmul_gmacs(size: int = 2048, repeats: int = 10) -> float:
    """The machine's fp32 matrix-multiply rate in GMAC/s (best of `repeats`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return size**3 / best / 1e9


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
        spec = importlib.util.spec_from_file_location("official_mixdehazenet", official_code / "MixDehazeNet.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
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


def measure(path: str, name: str, height: int, width: int, repeats: int, reference: Path,
            official_code: Path | None) -> dict:
    torch.manual_seed(0)
    model = build_model(name).eval()
    inputs = tuple(example_inputs(model, height, width, seed=1).values())
    if path == "official":
        run = OfficialNetwork(model, official_code).eval()
    elif path == "eager":
        run = model
    else:
        dehazer = Dehazer(model, device="cpu", backend="onnxruntime" if path == "onnxruntime" else "pytorch",
                          tile=None, photo_priors=False)
        run = dehazer.forward
        if path == "compile":
            dehazer.model = torch.compile(dehazer.model)
    with torch.no_grad():
        started = time.perf_counter()
        output = run(*inputs)
        warm_up = time.perf_counter() - started
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            run(*inputs)
            best = min(best, time.perf_counter() - started)
    if path == "eager":
        torch.save(output, reference)
    difference = (output - torch.load(reference)).abs().max().item() if reference.exists() else float("nan")
    return {"seconds": best, "warm_up": warm_up, "peak_gb": _peak_memory_gb(torch.device("cpu")),
            "difference": difference}


def main(argv=None) -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["mixdehazenet-t", "mixdehazenet-s", "mixcl-s"])
    parser.add_argument("--sizes", nargs="+", type=size_pair(8192), default=["256x256", "460x620"], help="HxW")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--official-code", type=Path,
                        help="the models/ folder of a clone of github.com/AmeryXiong/MixDehazeNet (official rows)")
    parser.add_argument("--repeats", type=whole_number(1, 1000), default=3)
    args = parser.parse_args(argv)
    if args.official_code and not (args.official_code / "MixDehazeNet.py").is_file():
        parser.error(f"{args.official_code}: no MixDehazeNet.py there")
    paths = ["eager"] + [p for p in args.paths if p != "eager" and (p != "official" or args.official_code)]

    peak = measure_in_fresh_process(matmul_gmacs)
    print(f"Machine: {machine()}; fp32 matrix-multiply peak {peak:.0f} GMAC/s; batch 1, fp32, best of {args.repeats} "
          f"after one warm-up, each row in a fresh process\n")
    print("| model | size (H×W) | path | latency s | speed-up vs eager | warm-up s | peak GB | GMAC/s | % of peak "
          "| max \\|Δ\\| vs eager |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            for height, width in args.sizes:
                gmacs = model_cost(name, (height, width))[1] / 1e9
                reference = Path(folder) / f"{name}-{height}x{width}.pt"
                eager = None
                for path in paths:
                    r = measure_in_fresh_process(measure, path, name, height, width, args.repeats, reference,
                                                 args.official_code)
                    eager = eager or r["seconds"]
                    rate = gmacs / r["seconds"]
                    difference = "—" if path == "eager" else f"{r['difference']:.1e}"
                    print(f"| {name} | {height}×{width} | {path} | {r['seconds']:.3f} | {eager / r['seconds']:.2f}× | "
                          f"{r['warm_up']:.1f} | {r['peak_gb']:.2f} | {rate:.1f} | {rate / peak:.0%} | {difference} |",
                          flush=True)


if __name__ == "__main__":
    main()
