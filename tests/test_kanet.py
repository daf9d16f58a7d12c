"""KA-Net: the network, its perceptual contrastive loss and sample reweighting (github.com/fyxnl/KA_Net)."""
import csv
import math

import pytest
import torch
import torch.nn as nn
import torchvision

import test as test_script
import train
from datasets import build_test_set
from engine import check_config
from losses import ContrastiveRegularization, ReweightedL1Loss, build_loss, gaussian_distance
from losses.reweighting import SampleReweighting, decorrelation_loss, random_fourier_features
from models import build_model, load_model
from models.kanet import KANet, SpatialAttention, convert_official_state_dict
from tests.test_training import logged_losses, train_killed_after_epoch
from utils.config import ConfigError, LossTerm
from utils.image import pad_to_multiple

from .conftest import tiny_config, write_checkpoint


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("ka-net-tiny").eval()


@pytest.mark.parametrize("size, padded", [((61, 83), (64, 96)), ((64, 64), (64, 64)), ((33, 100), (48, 112)),
                                          ((130, 47), (144, 48)), ((48, 48), (48, 48))])
def test_any_input_size_is_reflect_padded_to_a_multiple_of_16_and_cropped_back(tiny, size, padded):
    """The contract: the output at any size is the output on the input reflect-padded (right and bottom) to a
    multiple of 16, at least 48, cropped back; z pools the encoder's deepest map of that padded input. Each
    image of a batch is dehazed on its own (eval mode)."""
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y, z = tiny(x, return_global=True)
        explicit = pad_to_multiple(x, 16, 48)
        assert explicit.shape[-2:] == padded
        features = tiny.encoder(explicit)
        expected = torch.tanh(tiny.head(tiny.tail(tiny.decoder(tiny.bottleneck(features[-1])), features)))
        alone = tiny(x[1:])
    assert torch.equal(y, expected[..., : size[0], : size[1]])
    assert torch.equal(z, features[-1].mean((2, 3)))
    assert (alone - y[1:]).abs().max() <= 1e-5  # measured ≤ 2e-7 (AVX-512 and AVX2)


def test_inference_is_deterministic_and_the_fourier_projection_is_saved(tiny, tmp_path):
    x = torch.rand(1, 3, 64, 80) * 2 - 1
    with torch.no_grad():
        first, second = tiny(x), tiny(x)
    assert torch.equal(first, second)
    assert {"bottleneck.receptive_fields.fourier.weight", "bottleneck.receptive_fields.fourier.bias"} <= set(tiny.state_dict())
    write_checkpoint(tmp_path / "k.pt", "ka-net-tiny", net=tiny)
    torch.manual_seed(123)  # a different draw of every random buffer, overwritten by the checkpoint
    reloaded = load_model(tmp_path / "k.pt")
    with torch.no_grad():
        assert torch.equal(reloaded(x), first)


def decoded_official_vector(vectors_dir):
    """The official KA-Net parity vector with its int8-coded weights decoded (its format: ../shared/README.md)."""
    vector = torch.load(vectors_dir / "ka_net_official.pt", weights_only=True)
    scales = vector["model_scale"]
    state_dict = {k: t.to(torch.float32) * scales[k] if k in scales else t for k, t in vector["model_int8"].items()}
    return vector, state_dict


def test_official_checkpoint_reproduces_the_official_network(vectors_dir, tmp_path):
    """Weights as the authors' test script loads them ({'model': DataParallel state dict}), the Fourier projection
    the official forward drew: output and z agree with the official code's."""
    vector, state_dict = decoded_official_vector(vectors_dir)
    torch.save({"model": state_dict}, tmp_path / "official.pt")
    net = build_model("ka-net", checkpoint=tmp_path / "official.pt").eval()
    net.set_fourier_projection(vector["fourier"]["W"], vector["fourier"]["b"])
    reference = vector["intermediates"]
    with torch.no_grad():
        features = net.encoder(vector["input"])
        bottleneck = net.bottleneck(features[-1])
        decoded = net.decoder(bottleneck)
        output, z = net(vector["input"], return_global=True)
    # where a mismatch starts (measured: all ≤ 2.1e-5)
    for ours, theirs in zip(features, reference["encoder"]):
        assert (ours - theirs).abs().max() <= 1e-4
    assert (bottleneck - reference["bottleneck"]).abs().max() <= 1e-4
    assert (decoded - reference["decoder"]).abs().max() <= 1e-4
    assert (net.tail(decoded, features) - reference["tail"]).abs().max() <= 1e-4
    # measured 1.4e-6 and 7.3e-7 (Intel Xeon, AVX-512), 1.5e-6 and 6.3e-7 (AMD EPYC)
    assert output.shape == vector["output"].shape == (1, 3, 96, 112)
    assert (output - vector["output"]).abs().max().item() <= 1e-5
    assert (z - vector["global"]).abs().max().item() <= 1e-5

    reloaded = load_model(tmp_path / "official.pt", "ka-net")  # the notebook way, same weights
    reloaded.set_fourier_projection(vector["fourier"]["W"], vector["fourier"]["b"])
    with torch.no_grad():
        assert torch.equal(reloaded(vector["input"]), output)


def test_official_names_map_one_to_one_except_the_two_unused_modules(vectors_dir):
    _, state_dict = decoded_official_vector(vectors_dir)
    converted = convert_official_state_dict(state_dict)
    ignored = [k for k in state_dict if k.startswith(("module.Tencoder.mini_patch_embed4.", "module.convtail.conv_output."))]
    assert len(ignored) == 6 and sum(state_dict[k].numel() for k in ignored) == 296_667  # built, never called
    assert len(converted) == len(state_dict) - len(ignored)
    own = build_model("ka-net").state_dict()
    fourier = {"bottleneck.receptive_fields.fourier.weight", "bottleneck.receptive_fields.fourier.bias"}
    assert set(converted) == set(own) - fourier
    assert all(converted[k].shape == own[k].shape for k in converted)


def test_the_default_fourier_projection_is_the_release_draw_for_its_seed(vectors_dir):
    vector, _ = decoded_official_vector(vectors_dir)
    fourier = build_model("ka-net", fourier_seed=vector["fourier"]["seed"]).bottleneck.receptive_fields.fourier
    assert torch.equal(fourier.weight, vector["fourier"]["W"]) and torch.equal(fourier.bias, vector["fourier"]["b"])
    net = build_model("ka-net-tiny")
    with pytest.raises(ValueError, match=r"W \(64, 8\) and b \(64,\)"):
        net.set_fourier_projection(vector["fourier"]["W"], vector["fourier"]["b"])


def test_gradients_reach_every_parameter():
    """In float64, at 128×128 so that every attention has several keys (the decoder 2×2 tokens). Two kinds of
    exact zeros are switched off: stochastic depth (drop_path_rate=0) and SpatialAttention's one-channel ReLU,
    which this initialisation leaves negative everywhere (opened here). Conv biases right before a train-mode
    BatchNorm have no effect on the output: their gradient must be zero."""
    torch.manual_seed(0)
    net = build_model("ka-net-tiny", drop_path_rate=0.0).double().train()
    for module in net.modules():
        if isinstance(module, SpatialAttention):
            with torch.no_grad():
                module.gate[0].weight.abs_()
                module.gate[0].bias.fill_(1.0)
    before_batchnorm = {f"{name}.0.bias" for name, m in net.named_modules()
                        if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d)}
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    output, z = net(x, return_global=True)
    (output.square().mean() + z.square().mean()).backward()
    largest = {name: p.grad.abs().max().item() for name, p in net.named_parameters()}
    # measured: the smallest real gradient 5.2e-11 (the task queries), the structural zeros ≤ 7e-22
    assert len(before_batchnorm) == 14 and all(largest[name] < 1e-18 for name in before_batchnorm)
    assert not [name for name, g in largest.items() if name not in before_batchnorm and g < 1e-15]


def test_full_model_size_and_structure():
    net = build_model("ka-net")
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in net.named_children()}
    # measured on the official code: 55,360,759 used parameters
    assert counts == {"encoder": 15_961_856, "bottleneck": 23_320_804, "decoder": 11_954_176, "tail": 4_123_704,
                      "head": 219, "pool": 0}
    assert sum(counts.values()) == 55_360_759
    attention = net.decoder.stage.blocks[0].attn
    assert attention.task_queries.shape == (1, 48, 512) and attention.num_heads == 8
    assert [stage.embed.proj.stride[0] for stage in net.encoder.stages] == [4, 2, 2, 2]
    assert [len(stage.blocks) for stage in net.encoder.stages] == [2, 2, 2, 2]
    assert net.tail.up32.kernel_size == (2, 2) and net.head.padding_mode == "reflect"


def test_gaussian_distance_matches_its_formula():
    a = torch.tensor([0.0, 1.0, -2.0, 3.0])
    b = torch.tensor([0.5, 1.0, 1.0, -1.0])
    for sigma in (0.5, 1.0, 3.0):
        expected = sum(1 - math.exp(-(x - y) ** 2 / (2 * sigma ** 2)) for x, y in zip(a.tolist(), b.tolist())) / 4
        assert gaussian_distance(a, b, sigma).item() == pytest.approx(expected, rel=1e-6)
    assert gaussian_distance(a, a).item() == 0
    assert gaussian_distance(torch.zeros(1), torch.full((1,), 100.0)).item() == pytest.approx(1.0)  # saturates


def test_perceptual_contrastive_loss_on_vgg19_slices(monkeypatch):
    """KA-Net's configuration: VGG19 slices ending at relu1_1 … relu5_1, weights 1/32 … 1, Gaussian distance
    (random VGG weights stand in for the ImageNet ones, which cannot be downloaded here)."""
    monkeypatch.setattr("models.perceptual.torchvision_state_dict", lambda *args: torchvision.models.vgg19().state_dict())
    torch.manual_seed(0)
    loss = ContrastiveRegularization("vgg19", distance="gaussian", sigma=1.0)
    assert all(isinstance(stage[-1], nn.ReLU) for stage in loss.features.stages)
    assert loss.layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    gt, hazy = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    output = 0.5 * gt + 0.5 * hazy
    with torch.no_grad():
        features = [loss.features(t) for t in (output, gt, hazy)]
    expected = sum(w * gaussian_distance(o, p) / (gaussian_distance(o, n) + 1e-7)
                   for w, o, p, n in zip(loss.layer_weights, *features))
    assert loss(output, gt, hazy).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="distance"):
        ContrastiveRegularization("vgg19", distance="cosine")


def planted_spurious_correlation(n=32, dims=8, minority=8):
    """Features where dimension 1 copies dimension 0 in the majority of samples, not in the minority."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, dims, generator=g)
    z[minority:, 1] = z[minority:, 0] + 0.1 * torch.randn(n - minority, generator=g)
    return z


def mean_decorrelation(z, weights, draws=50):
    g = torch.Generator().manual_seed(1)  # fresh Fourier features, not the ones the weights were learned on
    return sum(decorrelation_loss(random_fourier_features(z, 5, g), weights) for _ in range(draws)).item() / draws


def weighted_correlation(x, y, w):
    mx, my = w @ x, w @ y
    return (w @ ((x - mx) * (y - my)) / torch.sqrt((w @ (x - mx) ** 2) * (w @ (y - my) ** 2))).item()


def test_reweighting_lowers_a_planted_spurious_correlation():
    z = planted_spurious_correlation()
    torch.manual_seed(0)
    weights = SampleReweighting().eval()(z)
    uniform = torch.full((len(z),), 1 / len(z))
    assert weights.sum().item() == pytest.approx(1.0) and weights.min() > 0
    # measured: decorrelation 0.0079 → 0.0045, correlation of the planted pair 0.76 → 0.44
    assert mean_decorrelation(z, weights) < 0.7 * mean_decorrelation(z, uniform)
    assert weighted_correlation(z[:, 0], z[:, 1], weights) < weighted_correlation(z[:, 0], z[:, 1], uniform) - 0.2
    assert weights.max() < 0.2  # spread out, not collapsed onto a few samples


def test_reweighted_l1_is_the_weighted_sum_of_per_image_l1_and_starts_the_memory_bank():
    loss = ReweightedL1Loss(bank_size=4)
    output, target = torch.rand(6, 3, 8, 8), torch.rand(6, 3, 8, 8)
    z = planted_spurious_correlation(n=6, minority=2)
    learned = []
    reweight = loss.reweighting.forward
    loss.reweighting.forward = lambda features: learned.append(reweight(features)) or learned[-1]
    value = loss(output, target, output, global_feature=z)
    (weights,) = learned
    per_image = (output - target).abs().mean((1, 2, 3))
    assert value.item() == pytest.approx((weights * per_image).sum().item(), rel=1e-6)
    assert weights.sum().item() == pytest.approx(1.0) and weights.max() / weights.min() > 10  # measured 3.4e3 (6 images)
    assert torch.equal(loss.reweighting.bank_features, z[:4])  # the first batch starts the bank
    loss.reweighting.steps = 0  # no learning: uniform weights, the plain L1
    assert loss(output, target, output, global_feature=z).item() == pytest.approx(per_image.mean().item(), rel=1e-6)


def test_losses_pass_the_global_feature_only_where_needed():
    criterion = build_loss([LossTerm("reweighted_l1", 1.0, {}), LossTerm("l1", 0.5, {})])
    assert criterion.needs_global_feature
    output, target = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    total, parts = criterion(output, target, output, torch.randn(4, 16))
    assert set(parts) == {"reweighted_l1", "l1"} and total.item() == pytest.approx(sum(p.item() for p in parts.values()))
    assert not build_loss([LossTerm("l1", 1.0, {})]).needs_global_feature
    assert KANet.returns_global_feature


KANET_TRAIN = {"batch_size": 8, "lr": 2e-3, "weight_decay": 0.0}  # with 64-px crops and the reweighted L1 loss
REWEIGHTED_L1 = [{"name": "reweighted_l1"}]


def test_kill_and_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, monkeypatch):
    """The reweighting memory bank is part of the training state: a resumed run sees the bank the killed one had."""
    options = {"model": "ka-net-tiny", "data": {"crop_size": 64, "samples_per_epoch": 16},
               "train": KANET_TRAIN | {"epochs": 3}, "loss": REWEIGHTED_L1}
    full = train.train(tiny_config(tmp_path / "full", **options))
    train_killed_after_epoch(tiny_config(tmp_path / "resumed", **options), 2, monkeypatch)
    bank = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["loss_state"]["reweighted_l1"]
    assert bank["bank_features"].shape == (8, 64)  # batch 8, z of width 64
    resumed = train.train(tiny_config(tmp_path / "resumed", **options), resume=True)
    full_losses, resumed_losses = logged_losses(tmp_path / "full"), logged_losses(tmp_path / "resumed")
    assert [step for step, _ in full_losses] == list(range(6))
    assert resumed_losses == full_losses  # exactly: step 4 differed (0.5322 vs 0.4715) while the bank was lost
    assert [h["psnr"] for h in resumed] == [h["psnr"] for h in full]


def test_short_training_run_learns_to_dehaze_and_test_py_scores_it(tmp_path):

    history = train.train(tiny_config(tmp_path, "ka-net-tiny", data={"crop_size": 64, "samples_per_epoch": 64},
                                      train=KANET_TRAIN | {"epochs": 8}, loss=REWEIGHTED_L1))
    psnr = [h["psnr"] for h in history]
    # measured: 12.36 → 14.99 dB (AVX-512), 12.36 → 15.06 dB (AVX2); the hazy inputs score 14.28 dB
    assert psnr[-1] > psnr[0] + 2.0 and psnr[-1] > history[-1]["hazy_psnr"] + 0.3, psnr
    # the protocol evaluation reads KA-Net checkpoints like any other: its score of one image, recomputed
    summary = test_script.run(test_script.parse_args(["--checkpoint", str(tmp_path / "best.pt"), "--data", "synthetic",
                                                      "--out", str(tmp_path / "test"), "--no-images"]))
    with open(tmp_path / "test" / "per_image.csv") as f:
        first = next(csv.DictReader(f))
    item = build_test_set("synthetic")[0]
    with torch.no_grad():
        output = load_model(tmp_path / "best.pt")(item["hazy"][None]).clamp(-1, 1) * 0.5 + 0.5
    expected = 10 * math.log10(1 / (output - (item["gt"][None] * 0.5 + 0.5)).square().mean().item())
    assert summary["model"] == "ka-net-tiny" and first["name"] == item["name"]
    assert float(first["psnr"]) == pytest.approx(expected, abs=1e-4)


def test_reweighting_needs_a_model_with_a_global_feature(tmp_path):
    with pytest.raises(ConfigError, match="reweighted_l1 needs the network's global feature"):
        check_config(tiny_config(tmp_path, data={"crop_size": 64, "samples_per_epoch": 64},
                                 train=KANET_TRAIN | {"epochs": 4}, loss=REWEIGHTED_L1))
