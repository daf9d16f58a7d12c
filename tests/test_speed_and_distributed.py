"""train.py at scale: DDP with gradient accumulation, mixed precision, non-finite steps, EMA, channels-last,
and the contrastive regulariser on real ImageNet features."""
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import train
from models import load_model
from models.perceptual import build_feature_extractor
from models.weights import MissingWeightsError
from utils.checkpoint import load_checkpoint
from utils.config import config_from_dict
from utils.image import read_image
from utils.losses import ContrastiveRegularization, build_loss

from .test_training import logged_losses


def config_dict(out_dir, **train_options):
    return {"model": "mixdehazenet-t", "out_dir": str(out_dir),
            "data": {"dataset": "synthetic", "crop_size": 32, "samples_per_epoch": 8, "num_workers": 0},
            "train": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "amp": "off", **train_options}}


def _ddp_process(rank, world_size, port, values):
    import os
    os.environ.update(WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train.train(config_from_dict(values))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process_gradient_accumulation(tmp_path):
    # one process: 2 micro-batches of 2 accumulated per step; DDP: 2 processes with one micro-batch of 2 each
    single = train.train(config_from_dict(config_dict(tmp_path / "single", micro_batch_size=2)))
    assert load_checkpoint(tmp_path / "single" / "last.pt")["epoch"] == 2
    mp.spawn(_ddp_process, args=(2, _free_port(), config_dict(tmp_path / "ddp")), nprocs=2)
    single_losses, ddp_losses = logged_losses(tmp_path / "single"), logged_losses(tmp_path / "ddp")
    assert [s for s, _ in single_losses] == [s for s, _ in ddp_losses] == [0, 1, 2, 3]
    for (_, a), (_, b) in zip(single_losses, ddp_losses):
        assert abs(a - b) <= 1e-5 * abs(a), (single_losses, ddp_losses)
    a, b = load_checkpoint(tmp_path / "single" / "last.pt")["model"], load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    weights = [k for k in a if "running" not in k and "num_batches" not in k]  # BN statistics are per process
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in weights) < 1e-4
    assert len(single) == 2


def test_accumulation_keeps_the_effective_batch(tmp_path):
    whole = train.train(config_from_dict(config_dict(tmp_path / "whole", epochs=1)))
    halves = train.train(config_from_dict(config_dict(tmp_path / "halves", epochs=1, micro_batch_size=2)))
    # BatchNorm sees micro-batches, so the numbers differ a little, but the steps are the same
    assert [s for s, _ in logged_losses(tmp_path / "whole")] == [s for s, _ in logged_losses(tmp_path / "halves")] == [0, 1]
    assert abs(whole[0]["psnr"] - halves[0]["psnr"]) < 3.0


def test_bf16_autocast_training_step_on_cpu(tmp_path):
    bf16 = train.train(config_from_dict(config_dict(tmp_path / "bf16", epochs=1, amp="bf16")))
    fp32 = train.train(config_from_dict(config_dict(tmp_path / "fp32", epochs=1, amp="off")))
    assert train.autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert train.autocast_dtype("fp16", torch.device("cpu")) is None  # the GPU default trains fp32 on a CPU
    (_, a), (_, b) = logged_losses(tmp_path / "bf16")[0], logged_losses(tmp_path / "fp32")[0]
    assert a != b and abs(a - b) < 0.02 * b  # bf16 rounding: different, but close
    assert bf16[0]["psnr"] > 0 and fp32[0]["psnr"] > 0


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

    monkeypatch.setattr(train, "build_loss", poisoned)
    config = config_from_dict(config_dict(tmp_path / "run", epochs=1, max_skipped_steps=5))
    train.train(config)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["skipped_steps"] == 1
    config = config_from_dict(config_dict(tmp_path / "stop", epochs=10, max_skipped_steps=2))
    with pytest.raises(RuntimeError, match="3 steps had a non-finite loss"):
        train.train(config)


def test_ema_is_evaluated_saved_and_loaded(tmp_path):
    history = train.train(config_from_dict(config_dict(tmp_path, epochs=2, ema_decay=0.5)))
    assert {"ema_psnr", "ema_ssim"} <= set(history[-1])
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["ema_updates"] == 4
    assert any(not torch.equal(checkpoint["ema"][k], checkpoint["model"][k]) for k in checkpoint["model"])
    model = load_model(tmp_path / "last.pt")
    assert all(torch.equal(v, checkpoint["ema"][k]) for k, v in model.state_dict().items())


def test_channels_last_trains_like_contiguous(tmp_path):
    train.train(config_from_dict(config_dict(tmp_path / "nchw", epochs=1)))
    train.train(config_from_dict(config_dict(tmp_path / "nhwc", epochs=1, channels_last=True)))
    for (_, a), (_, b) in zip(logged_losses(tmp_path / "nchw"), logged_losses(tmp_path / "nhwc")):
        assert abs(a - b) <= 1e-4 * a


_STEPS = """
import resource, sys, torch
from utils.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for step in range(20):  # each step allocates, fills and frees the same large blocks (52 MiB on average)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    activations = [torch.ones(n) for n in (2**24, 2**23, 3 * 2**22, 2**24)]
    del activations
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[10:]))  # the blocks settle into place within a few steps
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_kept_freed_memory_is_reused_without_page_faults():
    root = Path(__file__).resolve().parents[1]
    faults = {mode: int(subprocess.run([sys.executable, "-c", _STEPS, mode], cwd=root, capture_output=True,
                                       text=True, check=True).stdout) for mode in ("default", "keep")}
    pages_per_step = (2**24 + 2**23 + 3 * 2**22 + 2**24) * 4 // 4096
    assert faults["default"] > 0.9 * 10 * pages_per_step  # glibc maps every block afresh, every step
    assert faults["keep"] < 0.05 * faults["default"]     # steady state: the freed blocks are reused


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


def test_contrastive_loss_is_frozen_and_passes_gradients(reside_samples):
    loss = ContrastiveRegularization("efficientnet-lite0")
    loss.train()
    assert not loss.features.training and not any(p.requires_grad for p in loss.parameters())
    _, gt, hazy = next(_pairs(reside_samples, 1))
    output = (0.5 * gt + 0.5 * hazy).requires_grad_()
    loss(output, gt, hazy).backward()
    assert output.grad.abs().sum() > 0
    extractor = build_feature_extractor("efficientnet-lite0")
    assert [f.shape[1] for f in extractor(gt[..., :64, :64])] == [24, 40, 112, 320]


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
