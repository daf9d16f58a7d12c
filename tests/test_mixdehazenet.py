"""MixDehazeNet: the official architecture and checkpoints, any input size, the depthwise layers' CPU backward, and
loading checkpoints of this project."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import build_model, list_models, load_model
from models.layers import DilatedDepthwiseConv2d
from models.mixdehazenet import convert_official_state_dict
from utils.checkpoint import CheckpointError
from utils.image import pad_to_multiple

from .conftest import write_checkpoint

# measured on the official code
PARAMETERS = {"mixdehazenet-t": 1_622_950, "mixdehazenet-s": 3_164_944,
              "mixdehazenet-b": 6_248_932, "mixdehazenet-l": 12_416_908}


def test_variants_are_registered():
    assert set(PARAMETERS) <= set(list_models())


@pytest.mark.parametrize("name", PARAMETERS)
def test_parameter_counts_match_official(name):
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]
    millions = {"t": 1.623, "s": 3.165, "b": 6.249, "l": 12.417}[name[-1]]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 3) == millions


def test_official_checkpoint_reproduces_reference_output(vectors_dir):
    path = vectors_dir / "mixdehazenet_t_official.pt"
    vector = torch.load(path, weights_only=True)
    model = build_model("mixdehazenet-t", checkpoint=path).eval()
    with torch.no_grad():
        output = model(vector["input"])
    assert output.shape == vector["input"].shape == (2, 3, 61, 83)
    assert (output - vector["output"]).abs().max().item() <= 1e-5


def test_official_names_map_one_to_one(vectors_dir):
    state_dict = torch.load(vectors_dir / "mixdehazenet_t_official.pt", weights_only=True)["state_dict"]
    converted = convert_official_state_dict(state_dict)
    assert len(converted) == len(state_dict)
    assert set(converted) == set(build_model("mixdehazenet-t").state_dict())


def test_unknown_official_key_is_reported():
    with pytest.raises(KeyError, match="conv9"):
        convert_official_state_dict({"module.patch_embed.proj.weight": torch.zeros(1),
                                     "module.layer1.blocks.0.conv9.weight": torch.zeros(1)})


# padded size: multiples of 4 (two stride-2 downsamplings), at least 40 (the dilated 7×7 at H/4); reflection
# needs pads smaller than the side, else edge replication
@pytest.mark.parametrize("size, padded, mode", [((1, 1), (40, 40), "replicate"), ((17, 30), (40, 40), "replicate"),
                                                ((33, 8), (40, 40), "replicate"), ((41, 83), (44, 84), "reflect")])
def test_any_input_size_is_padded_right_and_bottom_then_cropped_back(size, padded, mode):
    model = build_model("mixdehazenet-t").eval()
    x = torch.rand(1, 3, *size) * 2 - 1
    (h, w), (ph, pw) = size, padded
    explicit = F.pad(x, (0, pw - w, 0, ph - h), mode=mode)
    assert torch.equal(pad_to_multiple(x, model.size_multiple, model.min_size), explicit)
    with torch.no_grad():
        output, whole = model(x), model(explicit)
    assert output.shape == x.shape and torch.equal(output, whole[..., :h, :w])  # the same computation, bit for bit


def test_project_checkpoint_round_trip(tmp_path):
    model = build_model("mixdehazenet-t").eval()
    path = tmp_path / "model.pt"
    write_checkpoint(path, net=model)
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(build_model("mixdehazenet-t", checkpoint=path).eval()(x), expected)
        loaded = load_model(path)
        assert not loaded.training and loaded.model_name == "mixdehazenet-t"
        assert torch.equal(loaded(x), expected)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    write_checkpoint(path)
    with pytest.raises(ValueError, match="holds a 'mixdehazenet-t' model, not 'mixdehazenet-s'"):
        build_model("mixdehazenet-s", checkpoint=path)


def test_unknown_model_and_missing_checkpoint_are_clear(tmp_path):
    with pytest.raises(KeyError, match="unknown model 'mixdehazenet-x'"):
        build_model("mixdehazenet-x")
    with pytest.raises(CheckpointError, match="checkpoint .*nothing.pt: no such file"):
        build_model("mixdehazenet-t", checkpoint=tmp_path / "nothing.pt")


@pytest.mark.parametrize("kernel_size, dilation, padding_mode, channels_last",
                         [(7, 3, "reflect", False), (5, 3, "zeros", True), (3, 2, "reflect", True), (3, 1, "zeros", False)])
def test_dilated_depthwise_gradients_by_convolution_match_pytorch(kernel_size, dilation, padding_mode, channels_last):
    torch.manual_seed(0)
    fast = DilatedDepthwiseConv2d(6, kernel_size, dilation, padding_mode)
    stock = nn.Conv2d(6, 6, kernel_size, padding=fast.padding, dilation=dilation, groups=6, padding_mode=padding_mode)
    stock.load_state_dict(fast.state_dict())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 6, 29, 40).contiguous(memory_format=memory_format)
    grad_output = torch.randn(3, 6, 29, 40)
    results = []
    for conv in (fast, stock):
        x_ = x.clone().requires_grad_()
        y = conv(x_)
        grads = torch.autograd.grad(y, (x_, conv.weight, conv.bias), grad_output)
        results.append((y, y.grad_fn.name(), *grads))
    (y_fast, fast_fn, *fast_grads), (y_stock, stock_fn, *stock_grads) = results
    assert "ConvolutionGradients" in fast_fn and "ConvolutionGradients" not in stock_fn
    assert torch.allclose(y_fast, y_stock, atol=1e-6)
    for a, b in zip(fast_grads, stock_grads):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_dilated_depthwise_bf16_autocast_gradients_on_cpu():
    torch.manual_seed(0)
    conv = DilatedDepthwiseConv2d(4, 5, 3)
    x = torch.randn(2, 4, 24, 24, requires_grad=True)
    grads = {}
    for fast in (True, False):
        conv.fast_cpu_backward = fast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        grads[fast] = torch.autograd.grad(y.float().square().sum(), (x, conv.weight))
    for a, b in zip(grads[True], grads[False]):
        assert a.dtype == b.dtype == torch.float32
        # bf16 rounding of the two summation orders; measured (input, weight gradient): 0 and 4.9e-3 × max with
        # AVX-512 bf16 hardware, 8.85e-3 and 4.9e-3 × max on the AVX2 path (no bf16 instructions)
        assert (a - b).abs().max() <= 0.02 * b.abs().max()


def test_mixdehazenet_trains_the_same_with_either_depthwise_backward():
    torch.manual_seed(0)
    model = build_model("mixdehazenet-t").train()
    x = torch.rand(2, 3, 48, 56) * 2 - 1
    grads = {}
    for fast in (True, False):
        for module in model.modules():
            if isinstance(module, DilatedDepthwiseConv2d):
                module.fast_cpu_backward = fast
        model.zero_grad()
        (model(x) - x.flip(-1)).abs().mean().backward()
        grads[fast] = {name: p.grad.clone() for name, p in model.named_parameters()}
    assert sum("dilated" in name for name in grads[True]) == 3 * 2 * 6  # 3 convs × (weight, bias) × 6 blocks
    for name, g in grads[False].items():
        assert (grads[True][name] - g).abs().max() <= 1e-4 * g.abs().max() + 1e-9, name
