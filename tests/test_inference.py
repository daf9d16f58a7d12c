"""Inference on photos: load_model for every model, tiled vs whole-image outputs, dehaze(), the PyTorch and
ONNX Runtime backends, predict.py."""
import copy

import cv2
import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

import predict
from inference import Dehazer, as_rgb_array, dehaze
from inference.onnx import example_inputs, largest_difference
from inference.tiling import core_bounds, tile_starts, tiled_forward
from metrics import psnr
from models import build_model, list_models, load_model, model_class
from utils.image import find_images, read_image, to_tensor, to_uint8, to_unit_range

from .conftest import LABELS_PRIOR, load_script, write_checkpoint

PHOTOS = ("canyon.png", "test10.jpg", "man.png")


def model_inputs(name: str, x: torch.Tensor) -> tuple:
    return (x, torch.zeros(x.shape[0], dtype=torch.long)) if model_class(name).takes_prior else (x,)


@pytest.mark.parametrize("name", list_models())
def test_load_model_round_trips_every_registered_model(name, tmp_path):
    # MixCL variants carry constructor arguments (a labels prior) that the checkpoint must restore
    args = {"num_labels": 2} if model_class(name).takes_prior else {}
    model = build_model(name, **args).eval()
    write_checkpoint(tmp_path / "model.pt", name, args, net=model)
    loaded = load_model(tmp_path / "model.pt")
    assert type(loaded) is type(model) and loaded.model_name == name and not loaded.training
    reference = model.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in loaded.state_dict().items())
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(*model_inputs(name, x)), model(*model_inputs(name, x)))


def test_tile_layout_covers_the_image_and_cores_partition_it():
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))
    cores = core_bounds(starts, 256, 1000, multiple=4)
    assert cores[0][0] == 0 and cores[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
    assert all(start <= lo and hi <= start + 256 and lo % 4 == 0 for start, (lo, hi) in zip(starts, cores))
    assert tile_starts(200, 256, 64) == [0]


@pytest.mark.parametrize("photo", PHOTOS)
def test_tiled_output_matches_the_whole_image(global_statistics_network, real_hazy, photo):
    """Real photos at 192×144 in 96-pixel tiles overlapping by 16 (six tiles). Measured (AVX-512 and AVX2 alike),
    statistics from the downscaled image / from a pass over the tiles / each tile its own: canyon 58.5 / 58.8 /
    39.5 dB, test10 59.0 / 59.7 / 38.2 dB, man 56.6 / 57.1 / 34.6 dB."""
    net = global_statistics_network
    x = to_tensor(cv2.resize(read_image(real_hazy / photo), (192, 144), interpolation=cv2.INTER_AREA))[None]
    with torch.no_grad():
        whole = to_unit_range(net(x))
    own_statistics = to_unit_range(tiled_forward(net, x, tile=96, overlap=16, statistics="own"))
    assert psnr(whole, to_unit_range(x)) < 15  # the network changes the photo a lot ...
    for statistics in ("downscaled", "tiles"):
        tiled = to_unit_range(tiled_forward(net, x, tile=96, overlap=16, statistics=statistics))
        assert psnr(tiled, whole) >= 50            # ... and tiles reproduce the change
        assert psnr(own_statistics, whole) < psnr(tiled, whole) - 15  # sharing the statistics is what does it

        # the remaining error is not concentrated where tiles meet: compare 8-pixel bands around the seams
        # with the rest (measured ratio 1.21, 1.24, 1.27 downscaled; 1.28, 1.50, 1.45 tiles)
        error = (tiled - whole).abs().mean(1)[0]
        seams = torch.zeros_like(error, dtype=torch.bool)
        for axis, length in ((0, 144), (1, 192)):
            for _, cut in core_bounds(tile_starts(length, 96, 16), 96, length, 4)[:-1]:
                index = [slice(None), slice(None)]
                index[axis] = slice(cut - 4, cut + 4)
                seams[tuple(index)] = True
        assert error[seams].mean() < 2 * error[~seams].mean()


def test_tiling_a_mixcl_network_passes_its_prior_to_every_tile(real_hazy):
    """130×98: tiles start off the multiple of 4 unless they follow the backbone's size rule. Measured 71.4 dB
    against 59.0 for the other class's prior; 29.9 dB when the tiles ignored the rule."""
    net = build_model("mixcl-t", num_labels=2).eval()
    x = to_tensor(cv2.resize(read_image(real_hazy / "canyon.png"), (130, 98), interpolation=cv2.INTER_AREA))[None]
    with torch.no_grad():
        indoor, outdoor = (to_unit_range(net(x, torch.tensor([label]))) for label in (0, 1))
    tiled = to_unit_range(tiled_forward(net, x, torch.tensor([1]), tile=64, overlap=16))
    assert psnr(tiled, outdoor) >= 50 and psnr(tiled, outdoor) > psnr(indoor, outdoor) + 5


def test_dehaze_takes_and_returns_numpy_and_pil(real_hazy):
    net = build_model("mixdehazenet-t").eval()
    photo = (read_image(real_hazy / "test10.jpg")[:61, :83] * 255).round().astype(np.uint8)  # odd size
    with torch.no_grad():
        expected = to_uint8(to_unit_range(net(to_tensor(photo / np.float32(255))[None]))[0])
    output = dehaze(net, photo, amp="off")  # channels-last on the CPU: within 1e-6 of `expected`, a level apart where it rounds
    assert output.dtype == np.uint8 and output.shape == photo.shape and np.abs(output.astype(int) - expected).max() <= 1
    pil = dehaze(net, Image.fromarray(photo).convert("RGBA"), amp="off")
    assert isinstance(pil, Image.Image) and np.array_equal(np.asarray(pil), output)
    unit = photo / np.float32(255)  # float images (16-bit files read by utils.image.read_image) stay float
    assert np.abs(dehaze(net, unit, amp="off") - expected / np.float32(255)).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="uint8"):
        as_rgb_array(photo.astype(np.float64))
    with pytest.raises(ValueError, match="H×W×3"):
        as_rgb_array(photo[..., 0])


@pytest.mark.parametrize("name", ["mixdehazenet-t", "mixcl-t", "ka-net-tiny"])
def test_dehazer_backends_reproduce_plain_pytorch_at_odd_sizes(name, real_hazy):
    """The default CPU path (channels-last) within 1e-5 of the network as built, ONNX Runtime within 1e-4, both
    at sizes the networks must pad (measured: at most 4.8e-7 and 3.6e-7)."""
    torch.manual_seed(0)
    args = {"num_labels": 2} if model_class(name).takes_prior else {}
    net = build_model(name, **args).eval()
    reference = copy.deepcopy(net)
    photo = to_tensor(read_image(real_hazy / "canyon.png"))[None]
    default, onnx = (Dehazer(net, device="cpu", amp="off", photo_priors=False),
                     Dehazer(copy.deepcopy(net), backend="onnxruntime", photo_priors=False))
    assert next(net.parameters()).device.type == "cpu" and onnx.device.type == "cpu"
    for height, width in ((61, 83), (50, 70)):
        x = photo[..., 100:100 + height, 100:100 + width] * 2 - 1
        inputs = model_inputs(name, x)[1:]
        with torch.no_grad():
            expected = reference(x, *inputs)
        assert (default.forward(x, *inputs) - expected).abs().max() <= 1e-5
        assert (onnx.forward(x, *inputs) - expected).abs().max() <= 1e-4


def test_onnxruntime_backend_tiles_in_pytorch_and_says_so(real_hazy):
    net = build_model("mixdehazenet-t").eval()
    photo = np.asarray(Image.open(real_hazy / "canyon.png").convert("RGB").resize((128, 96)))
    pytorch = Dehazer(copy.deepcopy(net), amp="off", tile=64, overlap=16)(photo)
    onnx = Dehazer(net, backend="onnxruntime", tile=64, overlap=16)
    with pytest.warns(UserWarning, match="tiles run in PyTorch"):
        assert np.abs(onnx(photo).astype(int) - pytorch).max() <= 1
    with pytest.raises(ValueError, match="onnxruntime backend runs fp32 on the CPU"):
        Dehazer(net, backend="onnxruntime", amp="bf16")


def test_dehazer_tiles_above_the_pixel_limit_and_asks_for_a_missing_label(real_hazy):
    net = build_model("mixcl-t", num_labels=2, prior={"mode": "labels", "classes": ["indoor", "outdoor"]}).eval()
    photo = np.asarray(Image.open(real_hazy / "canyon.png").convert("RGB").resize((128, 96)))
    whole = Dehazer(net, amp="off", label="outdoor")
    tiled = Dehazer(net, amp="off", label="outdoor", tile="auto", max_whole_pixels=64 * 64)
    assert np.abs(whole(photo).astype(int) - tiled(photo)).max() <= 2 and tiled.last_tiled and not whole.last_tiled
    with pytest.raises(Exception, match=r"labels` prior: give each photo's class with --label or --labels \(label= in Python\)"):
        Dehazer(net)


def test_predict_script(real_hazy, tmp_path):
    net = build_model("mixdehazenet-t").eval()
    write_checkpoint(tmp_path / "net.pt", net=net)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.open(real_hazy / "canyon.png").convert("RGB").resize((96, 72)).save(photos / name)
    gt = tmp_path / "gt"
    gt.mkdir()
    Image.open(real_hazy / "test10.jpg").convert("RGB").resize((96, 72)).save(gt / "a.png")
    out = tmp_path / "out"
    written = predict.run(predict.parse_args([str(photos / "a.png"), "--checkpoint", str(tmp_path / "net.pt"),
                                              "--out", str(out), "--compare", "--gt", str(gt), "--tile", "64",
                                              "--overlap", "16"]))
    assert written == [out / "a.png"]
    photo = np.asarray(Image.open(photos / "a.png"))
    assert np.abs(np.asarray(Image.open(out / "a.png")).astype(int) - dehaze(net, photo)).max() <= 2
    comparison = np.asarray(Image.open(out / "comparisons" / "a.jpg"))
    assert comparison.shape == (72 + 28, 3 * 96 + 2 * 8, 3)  # hazy | output | ground truth, captions below

    # a glob and a folder; b.jpg has no ground truth, a missing input names itself
    written = predict.run(predict.parse_args([str(photos / "*.png"), str(photos), "--checkpoint",
                                              str(tmp_path / "net.pt"), "--out", str(out)]))
    assert written == [out / "a.png", out / "b.png"]
    with pytest.raises(Exception, match=r"gt/b.jpg: no such file"):
        predict.run(predict.parse_args([str(photos), "--checkpoint", str(tmp_path / "net.pt"), "--gt", str(gt)]))
    with pytest.raises(Exception, match="nothing.png: no such image"):
        find_images([str(photos / "nothing.png")])


def test_onnx_export_takes_any_size(tmp_path):
    export_onnx = load_script("export_onnx")
    write_checkpoint(tmp_path / "net.pt")
    difference = export_onnx.export(export_onnx.parse_args(
        ["--checkpoint", str(tmp_path / "net.pt"), "--out", str(tmp_path / "net.onnx"), "--check-size", "61x47"]))
    assert difference <= 1e-4 and (tmp_path / "net.onnx").stat().st_size > 100_000
    model = load_model(tmp_path / "net.pt")
    for height, width in ((64, 48), (37, 90)):  # sizes the graph was neither traced nor checked at
        assert largest_difference(tmp_path / "net.onnx", model, example_inputs(model, height, width, seed=2)) <= 1e-4
    with pytest.raises(SystemExit, match=r"^error: argument --check-size: expected HEIGHTxWIDTH in pixels, e.g. 230x310, "
                                         r"got '61' \(.* --help lists the options\)$"):
        export_onnx.export(export_onnx.parse_args(
            ["--checkpoint", str(tmp_path / "net.pt"), "--out", str(tmp_path / "x.onnx"), "--check-size", "61"]))



def test_onnx_export_of_a_mixcl_network_takes_the_prior(tmp_path):
    export_onnx = load_script("export_onnx")
    checkpoint = write_checkpoint(tmp_path / "mixcl-t.pt", "mixcl-t", {"num_labels": 2}, LABELS_PRIOR)
    assert export_onnx.export(export_onnx.parse_args(
        ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--check-size", "50x66"])) <= 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["hazy", "prior"]
