"""Training losses: MixDehazeNet's contrastive regulariser as released and in its principled form, and where
their ImageNet weights come from."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torchvision

import train
from losses import ContrastiveRegularization, build_loss
from models.perceptual import build_feature_extractor
from models.weights import MissingWeightsError
from utils.config import LossTerm
from utils.image import read_image

from .conftest import tiny_config

RELEASED_REGULARISER = Path(__file__).resolve().parent / "reference" / "MixDehazeNet" / "utils" / "CR_res.py"


def released_contrast_loss(monkeypatch, resnet: nn.Module) -> nn.Module:
    """The released `ContrastLoss_res()` itself (MixDehazeNet's `utils/CR_res.py`, kept in tests/reference), with
    this network for its `models.resnet152(pretrained=True)` so that both sides share one set of random weights,
    on the CPU (its `.cuda()` returns the module). Never put in eval mode, as released."""
    spec = importlib.util.spec_from_file_location("released_cr_res", RELEASED_REGULARISER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "models", SimpleNamespace(resnet152=lambda pretrained: resnet))
    monkeypatch.setattr(nn.Module, "cuda", lambda self, device=None: self)
    return module.ContrastLoss_res()


@pytest.fixture(scope="module")
def random_resnet152():
    torch.manual_seed(0)
    return torchvision.models.resnet152().state_dict()


@pytest.fixture
def real_crops(reside_samples):
    """Two 64×64 crops of real RESIDE pairs in [-1, 1]: (output halfway from hazy to clear, clear, hazy)."""
    names = sorted(p.name for p in (reside_samples / "GT").iterdir())[:2]
    crop = (slice(100, 164), slice(200, 264))

    def load(folder):
        images = [torch.from_numpy(read_image(reside_samples / folder / n)[crop]).permute(2, 0, 1) for n in names]
        return torch.stack(images) * 2 - 1
    gt, hazy = load("GT"), load("hazy")
    return 0.5 * gt + 0.5 * hazy, gt, hazy


def both_regularisers(monkeypatch, state_dict):
    monkeypatch.setattr("models.perceptual.torchvision_state_dict", lambda *args: state_dict)
    resnet = torchvision.models.resnet152()
    resnet.load_state_dict(state_dict)
    return ContrastiveRegularization("resnet152", as_released=True), released_contrast_loss(monkeypatch, resnet)


def loss_and_gradient(loss, output, gt, hazy, autocast=False):
    output = output.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = loss(output, gt, hazy)
    value.float().backward()
    return value.float().item(), output.grad


def test_released_regulariser_computes_what_the_release_computes(monkeypatch, random_resnet152, real_crops):
    ours, released = both_regularisers(monkeypatch, random_resnet152)
    ours.eval()  # a surrounding .eval() must not change it: the release never leaves train mode
    value, gradient = loss_and_gradient(ours, *real_crops)
    expected, expected_gradient = loss_and_gradient(released, *real_crops)
    assert value == pytest.approx(expected, rel=1e-5)  # measured: bit-identical (1.4049)
    assert (gradient - expected_gradient).norm() <= 1e-5 * expected_gradient.norm()
    # the running statistics drift the same way (three batches went through each BatchNorm)
    ours_bn, released_bn = ours.features.stages[0][1], released.vgg.slice1[1]
    assert torch.allclose(ours_bn.running_mean, released_bn.running_mean, rtol=1e-5, atol=1e-7)
    assert int(ours_bn.num_batches_tracked) == 3

    # under the training step's autocast it follows the autocast, as the release did
    value_bf16, _ = loss_and_gradient(ours, *real_crops, autocast=True)
    expected_bf16, _ = loss_and_gradient(released, *real_crops, autocast=True)
    assert value_bf16 == pytest.approx(expected_bf16, rel=1e-5)
    assert abs(value_bf16 - value) > 1e-4 * value  # bf16 features: measured 0.4–1.5% from the fp32 value


def test_principled_regulariser_is_a_different_function(monkeypatch, random_resnet152, real_crops):
    released_form, _ = both_regularisers(monkeypatch, random_resnet152)
    principled = ContrastiveRegularization("resnet152")
    assert not principled.features.training and released_form.features.training
    value, gradient = loss_and_gradient(principled, *real_crops)
    released_value, released_gradient = loss_and_gradient(released_form, *real_crops)
    # measured with these random weights: 0.81 vs 1.40 (released), gradient cosine 0.01 (AVX-512 and AVX2)
    assert abs(value - released_value) > 0.3 * released_value
    cosine = torch.nn.functional.cosine_similarity(gradient.flatten(), released_gradient.flatten(), dim=0)
    assert cosine < 0.5

    # train.py calls the losses under the step's autocast: the principled form still computes in fp32,
    # the released one follows the autocast
    combined = build_loss([LossTerm("contrastive", 1.0, {"backbone": "resnet152"})])
    combined.terms["contrastive"] = principled
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert combined(real_crops[0], *real_crops[1:])[0].item() == pytest.approx(value, rel=1e-6)
        combined.terms["contrastive"] = released_form
        assert combined(real_crops[0], *real_crops[1:])[0].item() != pytest.approx(released_value, rel=1e-4)


def test_released_form_exists_only_for_resnet152(monkeypatch):
    monkeypatch.setattr("models.perceptual.torchvision_state_dict", lambda *args: torchvision.models.vgg19().state_dict())
    with pytest.raises(ValueError, match="as_released is the released ResNet-152 regulariser"):
        ContrastiveRegularization("vgg19", as_released=True)


# one epoch of one batch of 2, with the released ResNet-152 regulariser
RESNET_RUN = {"data": {"samples_per_epoch": 2}, "train": {"batch_size": 2},
              "loss": [{"name": "l1"}, {"name": "contrastive", "weight": 0.1,
                        "args": {"backbone": "resnet152", "as_released": True}}]}


def test_offline_a_run_needing_resnet152_stops_at_start_up_then_trains_once_the_file_is_in_place(
        tmp_path, monkeypatch, random_resnet152):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("models.weights.WEIGHTS_DIR", tmp_path / "pretrained")
    monkeypatch.setattr("engine.data.build_training_sets", lambda data: pytest.fail("data touched before the weights check"))
    with pytest.raises(MissingWeightsError) as error:
        train.train(tiny_config(tmp_path / "run", **RESNET_RUN))
    message = str(error.value)
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "resnet152-394f9c45.pth"
    assert "resnet152-394f9c45.pth" in message and str(cache) in message
    assert "torchvision.models.resnet152(weights='IMAGENET1K_V1')" in message
    monkeypatch.undo()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache.parent.mkdir(parents=True)
    torch.save(random_resnet152, cache)
    history = train.train(tiny_config(tmp_path / "run", **RESNET_RUN))
    assert len(history) == 1 and history[0]["epoch"] == 1


def test_online_torchvision_downloads_the_weights_itself(tmp_path, monkeypatch, random_resnet152):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("models.weights.WEIGHTS_DIR", tmp_path / "pretrained")
    monkeypatch.setattr("models.weights.server_reachable", lambda url, timeout=3.0: url == "https://download.pytorch.org/models/resnet152-394f9c45.pth")
    downloads = []

    def download(weights, progress, check_hash):
        downloads.append(weights.name)
        return random_resnet152
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", download)
    loss = ContrastiveRegularization("resnet152")
    assert downloads == ["IMAGENET1K_V1"]
    assert torch.equal(loss.features.stages[3][0].conv1.weight, random_resnet152["layer4.0.conv1.weight"])


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
