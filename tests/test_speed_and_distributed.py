"""train.py at scale: DDP with gradient accumulation, mixed precision, non-finite steps, EMA, channels-last,
and the contrastive regulariser on real ImageNet features."""
import ctypes
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.optim.swa_utils import AveragedModel

import train
from benchmarks import gpu_suite
from benchmarks.benchmark_models import measure_in_fresh_process
from engine import TrainingDiverged
from losses import ContrastiveRegularization, build_loss
from models import build_model, load_model
from models.perceptual import build_feature_extractor
from models.weights import MissingWeightsError
from utils.checkpoint import load_checkpoint
from utils.image import read_image

from .conftest import tiny_config
from .test_training import logged_losses


def _ddp_process(rank, world_size, port, config):
    os.environ.update(WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train.train(config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process_gradient_accumulation(tmp_path):
    # one process: 2 micro-batches of 2 accumulated per step; DDP: 2 processes with one micro-batch of 2 each
    single = train.train(tiny_config(tmp_path / "single", train={"epochs": 2, "micro_batch_size": 2}))
    assert load_checkpoint(tmp_path / "single" / "last.pt")["epoch"] == 2
    mp.spawn(_ddp_process, args=(2, _free_port(), tiny_config(tmp_path / "ddp", train={"epochs": 2})), nprocs=2)
    single_losses, ddp_losses = logged_losses(tmp_path / "single"), logged_losses(tmp_path / "ddp")
    assert [s for s, _ in single_losses] == [s for s, _ in ddp_losses] == [0, 1, 2, 3]
    for (_, a), (_, b) in zip(single_losses, ddp_losses):  # measured ≤ 1.2e-7 (AVX-512), ≤ 1.8e-7 (AVX2) relative
        assert abs(a - b) <= 1e-5 * abs(a), (single_losses, ddp_losses)
    a, b = load_checkpoint(tmp_path / "single" / "last.pt")["model"], load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    weights = [k for k in a if "running" not in k and "num_batches" not in k]  # BN statistics are per process
    # measured 1.5e-5 (AVX-512), 2.5e-5 (AVX2), weights up to 1.0: summation order, amplified by AdamW's
    # normalised first steps
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in weights) < 1e-4
    assert len(single) == 2


def _without_batch_statistics(name, **args):
    """The network with its BatchNorm layers taken out: then nothing couples the images of a batch."""
    model = build_model(name, **args)
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(parent, child_name, torch.nn.Identity())
    return model


def test_accumulation_keeps_the_effective_batch(tmp_path, monkeypatch):
    # BatchNorm would see micro-batches of 2 instead of the batch of 4; without it both runs compute the same
    # mean loss and gradient, up to the order of the float32 sums
    monkeypatch.setattr("engine.training.build_model", _without_batch_statistics)
    whole = train.train(tiny_config(tmp_path / "whole"))
    halves = train.train(tiny_config(tmp_path / "halves", train={"micro_batch_size": 2}))
    whole_losses, halves_losses = logged_losses(tmp_path / "whole"), logged_losses(tmp_path / "halves")
    assert [s for s, _ in whole_losses] == [s for s, _ in halves_losses] == [0, 1]
    for (_, a), (_, b) in zip(whole_losses, halves_losses):  # measured: equal (AVX-512), ≤ 1.2e-7 × a (AVX2)
        assert abs(a - b) <= 1e-6 * a, (whole_losses, halves_losses)
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt")["model"], load_checkpoint(tmp_path / "halves" / "last.pt")["model"]
    assert not any("running_mean" in k for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5  # measured 1.3e-6 (both), weights up to 1.0
    assert abs(whole[0]["psnr"] - halves[0]["psnr"]) < 1e-4  # measured 6e-8 dB at 15.24 dB


@pytest.mark.parametrize(("amp", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float32), ("off", torch.float32)])
def test_the_training_step_runs_the_network_in_the_amp_dtype_on_cpu(tmp_path, monkeypatch, amp, dtype):
    """On the CPU bf16 autocast applies and the GPU's fp16 default trains in fp32: the dtype the stem convolution
    computes in, seen by a hook during training."""
    seen = []

    def build_with_hook(name, **args):
        model = build_model(name, **args)
        model.stem.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
        return model
    monkeypatch.setattr("engine.training.build_model", build_with_hook)
    train.train(tiny_config(tmp_path / amp, train={"amp": amp}))
    assert seen and set(seen[:2]) == {dtype}  # the two training steps (validation follows, in fp32)


def test_non_finite_losses_skip_steps_then_stop_the_run(tmp_path, monkeypatch):
    real_build_loss = build_loss
    calls = {"n": 0}

    def poisoned(terms):
        criterion = real_build_loss(terms)
        forward = criterion.forward

        def every_other_nan(output, target, hazy, global_feature=None):
            calls["n"] += 1
            total, parts = forward(output, target, hazy, global_feature)
            return (total * float("nan"), parts) if calls["n"] % 2 else (total, parts)
        criterion.forward = every_other_nan
        return criterion

    monkeypatch.setattr("losses.build_loss", poisoned)
    config = tiny_config(tmp_path / "run", train={"max_skipped_steps": 5})
    train.train(config)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["skipped_steps"] == 1
    config = tiny_config(tmp_path / "stop", train={"epochs": 10, "max_skipped_steps": 2})
    with pytest.raises(TrainingDiverged, match="3 steps had a non-finite loss"):
        train.train(config)


def test_ema_is_the_exponential_average_of_the_steps_evaluated_saved_and_loaded(tmp_path, monkeypatch):
    steps = []  # the network after each optimiser step, as the EMA receives it

    class Recording(AveragedModel):
        def update_parameters(self, model):
            steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            super().update_parameters(model)

    monkeypatch.setattr("engine.training.AveragedModel", Recording)
    history = train.train(tiny_config(tmp_path, train={"epochs": 2, "ema_decay": 0.5}))
    assert {"ema_psnr", "ema_ssim"} <= set(history[-1])
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["ema_updates"] == len(steps) == 4
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in steps[-1].items())
    # decay d = 0.5: the first step is copied, then ema ← d·ema + (1 − d)·θ_n, so ema = θ1/8 + θ2/8 + θ3/4 + θ4/2
    # for weights and float buffers (BatchNorm statistics) alike
    floats = [k for k, v in checkpoint["ema"].items() if v.is_floating_point()]
    expected = {k: sum(w * step[k].double() for w, step in zip((1 / 8, 1 / 8, 1 / 4, 1 / 2), steps)) for k in floats}
    # measured 1.0e-7 (AVX-512 and AVX2; float32 lerp rounding, values up to 1.0); the EMA is 0.068 away from
    # the last weights
    assert max((checkpoint["ema"][k].double() - expected[k]).abs().max().item() for k in floats) < 1e-6
    assert max((checkpoint["ema"][k] - steps[-1][k]).abs().max().item() for k in floats) > 0.01
    model = load_model(tmp_path / "last.pt")
    assert all(torch.equal(v, checkpoint["ema"][k]) for k, v in model.state_dict().items())


def test_channels_last_trains_like_contiguous(tmp_path):
    train.train(tiny_config(tmp_path / "nchw"))
    train.train(tiny_config(tmp_path / "nhwc", train={"channels_last": True}))
    nchw, nhwc = logged_losses(tmp_path / "nchw"), logged_losses(tmp_path / "nhwc")
    assert [s for s, _ in nchw] == [s for s, _ in nhwc] == [0, 1]
    for (_, a), (_, b) in zip(nchw, nhwc):
        assert abs(a - b) <= 1e-4 * a


_ALLOCATOR = """
import ctypes, json, sys, torch
from utils.cpu_memory import keep_freed_memory
import os

class Mallinfo2(ctypes.Structure):  # <malloc.h>
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def state():  # bytes: heap taken from the system, mmap-ed blocks, heap in use, heap free
    info = libc.mallinfo2()
    return {"heap": info.arena, "mmap": info.hblkhd, "used": info.uordblks, "free": info.fordblks}

if sys.argv[1] == "keep":
    assert keep_freed_memory()
states = [state()]
block = torch.ones(2**24)  # 64 MiB: above glibc's largest mmap threshold (32 MiB), so mmap-ed by default
states.append(state())
del block
states.append(state())
block = torch.ones(3 * 2**22)  # 48 MiB
states.append(state())
print(json.dumps({"states": states}))
"""


def _glibc_has_mallinfo2() -> bool:
    return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_has_mallinfo2(),
                    reason="mallopt and mallinfo2 are glibc's (Linux, glibc >= 2.33)")
def test_kept_freed_memory_stays_in_the_heap_for_reuse():
    root = Path(__file__).resolve().parents[1]
    runs = {mode: json.loads(subprocess.run([sys.executable, "-c", _ALLOCATOR, mode], cwd=root, capture_output=True,
                                            text=True, check=True).stdout) for mode in ("default", "keep")}
    mib = 2**20
    # measured (glibc 2.36), MiB: default mmap 4 → 68 → 4 → 52 with the heap fixed at 110; keep: mmap fixed at 4,
    # heap 110 → 174 → 174 → 174, free 0 → 64 → 16
    before, held, freed, again = runs["default"]["states"]
    assert held["mmap"] - before["mmap"] >= 64 * mib  # by default a large block is mapped afresh ...
    assert freed["mmap"] == before["mmap"]             # ... and handed back to the system when freed
    assert again["mmap"] - freed["mmap"] >= 48 * mib   # and the next one is mapped again
    before, held, freed, again = runs["keep"]["states"]
    assert before["mmap"] == held["mmap"] == freed["mmap"] == again["mmap"]  # never mmap-ed
    assert held["used"] - before["used"] >= 64 * mib   # the heap serves the block ...
    assert freed["heap"] == held["heap"] and freed["free"] - held["free"] >= 64 * mib  # ... keeps it when freed ...
    assert again["heap"] == freed["heap"]              # ... and serves the next block from it (the heap does not grow)


def _pairs(folder, count=5):
    for path in sorted((folder / "GT").iterdir())[:count]:
        gt = torch.from_numpy(read_image(path)).permute(2, 0, 1)[None] * 2 - 1
        hazy = torch.from_numpy(read_image(folder / "hazy" / path.name)).permute(2, 0, 1)[None] * 2 - 1
        yield path.name, gt[..., :256, :256], hazy[..., :256, :256]


@pytest.mark.parametrize("distance", ["l1", "l2", "gaussian"])
def test_contrastive_loss_prefers_the_clear_image_on_real_pairs(reside_samples, distance):
    loss = ContrastiveRegularization("efficientnet-lite0", distance=distance)
    for name, gt, hazy in _pairs(reside_samples):
        # outputs on the way from the hazy image (α = 0) to the clear one (α = 1)
        values = [loss(a * gt + (1 - a) * hazy, gt, hazy).item() for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
        assert values[-1] < 1e-4 < values[0], name  # the clear image itself: zero up to float rounding
        assert all(a > b for a, b in zip(values, values[1:])), (name, values)  # monotone towards the clear image
        assert 0.2 < values[2] / sum(loss.layer_weights) < 5, (name, values)  # halfway: distances of one order


def test_contrastive_loss_is_frozen_and_its_gradient_matches_finite_differences(reside_samples):
    loss = ContrastiveRegularization("efficientnet-lite0")
    loss.train()
    assert not loss.features.training and not any(p.requires_grad for p in loss.parameters())
    _, gt, hazy = next(_pairs(reside_samples, 1))
    gt, hazy = gt[..., :64, :64].double(), hazy[..., :64, :64].double()  # float64: differences free of rounding
    loss.double()
    assert [f.shape[1] for f in loss.features(gt)] == [24, 40, 112, 320]
    output = (0.5 * gt + 0.5 * hazy).requires_grad_()
    loss(output, gt, hazy).backward()
    # central difference along a random direction; the ReLU6 network is kinked at a fine scale (off by 11–15% for
    # h = 1e-5…1e-3, 0.6% at 1e-6), so a tiny step: measured 7e-9 (AVX-512), 2e-9 (AVX2) relative
    direction, h = torch.randn_like(output), 1e-7
    with torch.no_grad():
        numeric = (loss(output + h * direction, gt, hazy) - loss(output - h * direction, gt, hazy)) / (2 * h)
    analytic = (output.grad * direction).sum()
    assert abs(numeric - analytic) <= 1e-2 * abs(analytic), (numeric, analytic)


def test_missing_torchvision_weights_say_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr("models.weights.WEIGHTS_DIR", tmp_path / "pretrained")
    with pytest.raises(MissingWeightsError) as error:
        ContrastiveRegularization("resnet152")
    message = str(error.value)
    assert "resnet152-394f9c45.pth) are not on this machine" in message
    assert "torchvision.models.resnet152(weights='IMAGENET1K_V1')" in message
    with pytest.raises(MissingWeightsError, match="vgg19"):
        build_feature_extractor("vgg19")


def test_gpu_suite_smoke_runs_every_path_and_the_paths_agree(capsys):
    results = gpu_suite.main(["--smoke"])
    # every training row starts from the same weights and batch: fp32 paths agree up to rounding (fp16 AMP trains
    # fp32 on the CPU), bf16 ones are close but rounded (measured: all fp32 0.697065, bf16 0.697109–0.697130)
    losses = {key: r["first_loss"] for key, r in results["training"].items()}
    assert len(losses) == 12
    plain = losses["fp32", "eager"]
    assert all(abs(v - plain) <= 1e-5 * plain for (precision, _), v in losses.items() if precision != "bf16")
    assert all(0 < abs(v - plain) <= 1e-3 * plain for (precision, _), v in losses.items() if precision == "bf16")
    # inference against fp32 in the default format: channels-last fp32 within rounding (measured ≤ 8.3e-7), fp16
    # and bf16 rounded (measured 5e-4–2e-3 and 4e-3–1.4e-2)
    for (name, _, precision, channels_last), r in results["inference"].items():
        bound = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 5e-2}[precision]
        assert r["difference"] <= bound, (name, precision, channels_last, r["difference"])
        if precision != "fp32":  # rounding to 16 bits shows; whether fp32 channels-last rounds differently is the kernels' choice
            assert r["difference"] > 0, (name, precision, channels_last)
        elif not channels_last:
            assert r["difference"] == 0  # the reference row itself
    assert len(results["inference"]) == 4 * 3 * 2
    assert results["largest"] == {"fp32": 128, "fp16": 128}  # the top of the smoke search range
    assert results["ddp"]["ddp"] and abs(results["ddp"]["first_loss"] - plain) <= 1e-6 * plain
    assert "| bf16 | compile + channels-last |" in capsys.readouterr().out


def test_largest_side_search_finds_the_boundary():
    assert gpu_suite.largest_side(lambda side: side <= 1000, 256, 16384) == 960
    assert gpu_suite.largest_side(lambda side: side * side <= 4096**2, 256, 16384) == 4096
    assert gpu_suite.largest_side(lambda side: True, 256, 1000) == 960
    assert gpu_suite.largest_side(lambda side: False, 256, 1024) == 0


def _fails(message):
    raise ValueError(message)


def test_a_failing_measurement_process_is_reported_not_waited_on():
    with pytest.raises(RuntimeError, match=r"(?s)_fails\('no GPU here',\) failed:.*ValueError: no GPU here"):
        measure_in_fresh_process(_fails, "no GPU here")
