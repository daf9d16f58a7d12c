"""`--amp auto` and the bf16 inference path: the CPU's answer decides (faked here both ways), the scripts'
defaults, and what bf16 costs in quality, bounded on real photos and real pairs."""
import copy
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evaluate_real
import predict
import test as test_script
from inference import Dehazer
from metrics import psnr
from models import build_model
from models.layers import conv_gelu
from utils.image import read_image, to_tensor, to_uint8, to_unit_range
from utils.precision import cpu_computes_bf16, precision

from .conftest import LABELS_PRIOR, write_checkpoint

PHOTOS = ("canyon.png", "test10.jpg", "man.png")
PAIRS = ("0025.jpg", "0352.jpg")


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make PyTorch report a CPU with or without native bf16: fake_cpu(True) / fake_cpu(False)."""
    def fake(native: bool) -> None:
        capabilities = {"avx512_bf16": native, "amx_bf16": False, "avx512_f": True}
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    return fake


@pytest.mark.parametrize(("capabilities", "native"), [
    ({"avx512_bf16": True, "amx_bf16": False}, True), ({"avx512_bf16": False, "amx_bf16": True}, True),
    ({"avx512_bf16": False, "amx_bf16": False, "avx512_f": True}, False), ({"architecture": "x86_64"}, False)])
def test_native_bf16_is_read_from_pytorchs_cpu_capabilities(monkeypatch, capabilities, native):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert cpu_computes_bf16() is native


@pytest.mark.parametrize(("native", "device", "expected"), [
    (True, "cpu", "bf16"), (False, "cpu", "fp32"), (True, "cuda", "fp32"), (False, "cuda", "fp32")])
def test_auto_is_bf16_only_on_a_cpu_that_computes_it(fake_cpu, native, device, expected):
    fake_cpu(native)
    assert precision("auto", device) == expected
    assert (precision("off", device), precision("bf16", device)) == ("fp32", "bf16")  # asked for, whatever the CPU


def test_without_native_bf16_the_default_dehazer_runs_the_model_itself_in_fp32(fake_cpu):
    fake_cpu(False)
    net = build_model("mixdehazenet-t").eval()
    photo = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    default = Dehazer(copy.deepcopy(net))
    assert default.precision == "fp32" and default.amp_dtype is None and default.network is default.model
    assert np.array_equal(default(photo), Dehazer(net, amp="off")(photo))


def test_with_native_bf16_the_default_dehazer_runs_a_bf16_copy_and_leaves_the_model_fp32(fake_cpu):
    fake_cpu(True)
    net = build_model("mixdehazenet-t").eval()
    dehazer = Dehazer(net)
    assert dehazer.precision == "bf16" and dehazer.model is net
    assert {p.dtype for p in net.parameters()} == {torch.float32}  # the caller's network is still fp32 ...
    assert {p.dtype for p in dehazer.network.parameters()} == {torch.bfloat16}  # ... what runs is bf16
    x = torch.rand(1, 3, 48, 64) * 2 - 1
    assert dehazer.forward(x).dtype == torch.float32
    assert Dehazer(net, backend="onnxruntime").precision == "fp32"  # ONNX Runtime runs fp32, auto included


def test_scripts_default_to_auto_and_test_py_to_fp32(tmp_path):
    assert predict.parse_args(["x.png", "--checkpoint", "c.pt"]).amp == "auto"
    assert evaluate_real.parse_args(["x.png", "--checkpoint", "c.pt"]).amp == "auto"
    assert test_script.parse_args(["--checkpoint", "c.pt", "--data", "synthetic"]).amp == "off"  # papers' scores


def test_test_py_records_the_precision_it_ran_in(reside_samples, tmp_path):
    """test.py on two real RESIDE pairs at 96×72, fp32 and bf16. Measured: PSNR 0.0006 dB, SSIM 2e-5 apart."""
    for folder in ("hazy", "GT"):
        (tmp_path / "pairs" / folder).mkdir(parents=True)
        for name in PAIRS:
            cv2.imwrite(str(tmp_path / "pairs" / folder / name.replace(".jpg", ".png")),
                        cv2.cvtColor(small(reside_samples / folder / name), cv2.COLOR_RGB2BGR))
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    summaries = {}
    for amp in ("off", "bf16"):
        test_script.run(test_script.parse_args(["--checkpoint", str(checkpoint), "--data", str(tmp_path / "pairs"),
                                                "--no-images", "--amp", amp, "--out", str(tmp_path / amp)]))
        summaries[amp] = json.loads((tmp_path / amp / "summary.json").read_text())
    assert (summaries["off"]["precision"], summaries["bf16"]["precision"]) == ("fp32", "bf16")
    assert abs(summaries["off"]["psnr"] - summaries["bf16"]["psnr"]) <= 0.005
    assert abs(summaries["off"]["ssim"] - summaries["bf16"]["ssim"]) <= 2e-4


def small(path, size=(96, 72)) -> np.ndarray:
    return to_uint8(cv2.resize(read_image(path), size, interpolation=cv2.INTER_AREA))


def test_bf16_changes_real_photos_by_a_level_at_most_and_keeps_the_fp32_residual(real_hazy):
    """A freshly initialised MixDehazeNet-T on three real photos at 96×72 (it moves them by 13–15 levels on
    average). Measured: at most 1 level apart, 0.088–0.094 levels on average; computing the output's residual
    (gain·x − bias + x) in bf16 as well, from a bf16-rounded input, gave 0.118–0.139."""
    net = build_model("mixdehazenet-t").eval()
    fp32, bf16 = Dehazer(copy.deepcopy(net), amp="off"), Dehazer(copy.deepcopy(net), amp="bf16")
    for name in PHOTOS:
        photo = small(real_hazy / name)
        reference, output = fp32(photo).astype(int), bf16(photo)
        assert np.abs(reference - photo).mean() > 10  # the network does change the photo
        difference = np.abs(reference - output)
        assert difference.max() <= 1 and difference.mean() <= 0.105, (name, difference.mean())


def test_bf16_costs_little_where_the_network_changes_photos_a_lot(global_statistics_network, real_hazy, reside_samples):
    """The network of the tiling tests (gates and output head amplified ×5: it moves the photos by 56–59 levels
    on average), so that bf16's rounding inside the network shows. Measured: real photos at most 4 levels apart,
    0.38–0.43 on average; on two real RESIDE pairs PSNR against the ground truth changed by at most 0.004 dB."""
    net = global_statistics_network
    fp32, bf16 = Dehazer(copy.deepcopy(net), amp="off"), Dehazer(copy.deepcopy(net), amp="bf16")
    for name in PHOTOS:
        photo = small(real_hazy / name)
        reference, output = fp32(photo).astype(int), bf16(photo)
        assert np.abs(reference - photo).mean() > 40
        difference = np.abs(reference - output)
        assert difference.max() <= 5 and difference.mean() <= 0.5, (name, difference.max(), difference.mean())
    for name in PAIRS:
        hazy, gt = small(reside_samples / "hazy" / name), small(reside_samples / "GT" / name)
        scores = [psnr(to_tensor(output / np.float32(255))[None], to_tensor(gt / np.float32(255))[None])
                  for output in (fp32(hazy), bf16(hazy))]
        assert abs(scores[0] - scores[1]) <= 0.02, (name, scores)


def test_bf16_keeps_mixcls_prior_and_tiles_working(real_hazy):
    """MixCL-T with its text-image attention's output amplified ×10 (and the backbone's weights on it), so that
    the class matters: the other class is 26 dB away. Measured: bf16 44.5 dB from fp32 whole, 40.6 dB in 64-pixel
    tiles."""
    torch.manual_seed(0)
    net = build_model("mixcl-t", num_labels=2, prior=LABELS_PRIOR).eval()
    with torch.no_grad():
        net.fusion.out_proj.weight *= 10
        net.backbone.stem.weight[:, 3:] *= 10
    x = to_tensor(small(real_hazy / "canyon.png", (130, 98)) / np.float32(255))[None] * 2 - 1
    outdoor, indoor = torch.tensor([1]), torch.tensor([0])
    fp32 = Dehazer(copy.deepcopy(net), amp="off", photo_priors=False)
    reference, other_class = (to_unit_range(fp32.forward(x, label)) for label in (outdoor, indoor))
    assert psnr(other_class, reference) < 30
    for tile in (None, 64):
        bf16 = Dehazer(copy.deepcopy(net), amp="bf16", photo_priors=False, tile=tile, overlap=16)
        output = to_unit_range(bf16.forward(x, outdoor))
        assert bf16.last_tiled == (tile is not None)
        assert psnr(output, reference) >= 38, (tile, psnr(output, reference))


def test_the_fused_convolution_and_gelu_is_the_exact_gelu_of_the_convolution():
    """conv_gelu's one oneDNN call (CPU inference, channels-last) against the two plain calls: the exact (erf) GELU,
    not the tanh approximation (which is 1e-3 away here)."""
    conv = torch.nn.Conv2d(24, 96, 1)
    x = (torch.randn(1, 24, 16, 20) * 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = F.gelu(conv(x.contiguous()))
        assert (conv_gelu(conv, x) - plain).abs().max() <= 1e-5
        assert (F.gelu(conv(x), approximate="tanh") - plain).abs().max() > 1e-4
        bf16 = conv_gelu(conv.to(torch.bfloat16), x.to(torch.bfloat16))
        assert bf16.dtype == torch.bfloat16 and (bf16.float() - plain).abs().max() <= 0.05 * plain.abs().max()
