"""The multi-degradation haze model (datasets/haze_model.py) and the dataset script built on it."""
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets import PairedImageDataset, validate_paired_folder
from datasets.haze_model import HazeModel, HazeParameters, add_haze, apply, transmission_map
from datasets.synthetic import SyntheticHazeDataset, load_photo
from engine import check_config
from utils.config import ConfigError, config_from_dict
from utils.image import write_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import synthesize_haze  # noqa: E402

from datasets.synthetic import CleanImageFolder

FACTORS = ("nonuniform_density", "coloured_airlight", "varying_airlight", "low_light", "blur", "noise", "jpeg")
CLASSIC = {factor: False for factor in FACTORS}
FACTOR_PARAMETERS = {"nonuniform_density": {"density_variation"}, "coloured_airlight": {"airlight_tint"},
                     "varying_airlight": {"airlight_gradient"}, "low_light": {"exposure", "gamma"},
                     "blur": {"defocus_sigma", "motion_length"}, "noise": {"shot_noise", "read_noise"},
                     "jpeg": {"jpeg_quality"}}


@pytest.fixture(scope="module")
def photo():
    clear, depth = load_photo("motorcycle_left", 96)  # real photo, real depth
    return clear[:64, :96], depth[:64, :96]


def classic(params):
    return HazeParameters(beta=params.beta, airlight=params.airlight)


@pytest.mark.parametrize("factor", FACTORS)
def test_each_factor_changes_the_image_only_when_enabled(photo, factor):
    clear, depth = photo
    off = HazeModel(**CLASSIC)
    on = HazeModel(**(CLASSIC | {factor: True}))
    hazy_off, params_off = off.synthesize(clear, depth, np.random.default_rng(7))
    hazy_on, params_on = on.synthesize(clear, depth, np.random.default_rng(7))
    assert np.array_equal(hazy_off, add_haze(clear, depth, params_off.beta, params_off.airlight))
    assert (params_on.beta, params_on.airlight) == (params_off.beta, params_off.airlight)  # same draw otherwise
    on_values, off_values = params_on.to_dict(), params_off.to_dict()
    changed = {name for name in on_values if on_values[name] != off_values[name]}
    assert changed and changed <= FACTOR_PARAMETERS[factor]  # only the factor's own parameters leave neutral
    assert np.array_equal(hazy_on, apply(clear, depth, params_on))  # and the image is made from them
    if factor == "varying_airlight":
        # g drew 0.0013 here, too small a change to bound (mean 1.9e-4); its closed form instead:
        # I_on − I_off = a·g·⟨x, u⟩·(1 − t) on the plane [−1, 1]²; measured max error 1.4e-7, values up to 6.7e-4
        ys, xs = np.meshgrid(np.linspace(-1, 1, clear.shape[0]), np.linspace(-1, 1, clear.shape[1]), indexing="ij")
        (ux, uy), t = params_on.airlight_direction, np.exp(-params_on.beta * depth.astype(np.float64))
        expected = params_on.airlight * params_on.airlight_gradient * (ux * xs + uy * ys) * (1 - t)
        assert np.abs(hazy_on.astype(np.float64) - hazy_off - expected[..., None]).max() <= 1e-6
    else:  # measured 0.013 (coloured_airlight) to 0.20 (low_light); directions are tested below
        assert np.abs(hazy_on - hazy_off).mean() > 1e-3


def test_denser_haze_moves_the_image_towards_the_airlight(photo):
    clear, depth = photo
    distances = [np.abs(apply(clear, depth, HazeParameters(beta=b, airlight=0.9)) - 0.9).mean() for b in (0.0, 0.5, 1.5, 4.0)]
    assert np.allclose(apply(clear, depth, HazeParameters(beta=0.0)), clear, atol=1e-6)
    assert all(a > b for a, b in zip(distances, distances[1:])), distances


def test_non_uniform_density_varies_the_transmission_at_constant_depth():
    depth = np.full((48, 64), 0.5, np.float32)
    uniform = transmission_map(depth, HazeParameters(beta=1.0))
    varied = transmission_map(depth, HazeParameters(beta=1.0, density_variation=0.5, density_seed=3))
    assert np.all(uniform == np.float32(np.exp(-0.5)))  # exp(−β·depth), rounded once to float32
    assert varied.std() > 0.02  # measured 0.075
    # low-frequency: neighbouring pixels differ far less than the field overall
    assert np.abs(np.diff(varied, axis=1)).mean() < 0.05 * (varied.max() - varied.min())  # measured 0.013


def test_airlight_colour_and_gradient_show_where_haze_is_opaque():
    clear = np.zeros((32, 32, 3), np.float32)
    far = np.ones((32, 32), np.float32)  # with β = 50 the image is the airlight itself
    grey = apply(clear, far, HazeParameters(beta=50.0, airlight=0.8))
    tinted = apply(clear, far, HazeParameters(beta=50.0, airlight=0.8, airlight_tint=(0.1, 0.0, -0.1)))
    sloped = apply(clear, far, HazeParameters(beta=50.0, airlight=0.8, airlight_gradient=0.2, airlight_direction=(1.0, 0.0)))
    assert np.allclose(grey, 0.8, atol=1e-5)
    assert tinted[..., 0].mean() == pytest.approx(0.88, abs=1e-4) and tinted[..., 2].mean() == pytest.approx(0.72, abs=1e-4)
    assert sloped[:, -1].mean() - sloped[:, 0].mean() == pytest.approx(0.32, abs=1e-3)  # left to right: ×(1 ∓ 0.2)


def test_low_light_darkens_blur_softens_noise_follows_the_signal_jpeg_loses_detail(photo):
    clear, depth = photo
    base = HazeParameters(beta=0.5, airlight=0.8)
    hazy = apply(clear, depth, base)

    dark = apply(clear, depth, dataclasses.replace(base, exposure=0.5, gamma=1.4))
    assert dark.mean() < 0.6 * hazy.mean()

    def sharpness(image):
        return cv2.Laplacian(image.mean(2), cv2.CV_32F).var()
    for blur in ({"defocus_sigma": 1.5}, {"motion_length": 7.0, "motion_angle": 30.0}):
        assert sharpness(apply(clear, depth, dataclasses.replace(base, **blur))) < 0.5 * sharpness(hazy)

    flat = np.concatenate([np.full((32, 64, 3), 0.05, np.float32), np.full((32, 64, 3), 0.9, np.float32)])
    noisy = apply(flat, np.zeros((64, 64), np.float32), HazeParameters(beta=0.0, shot_noise=0.004, read_noise=0.002))
    dark_std, bright_std = (noisy - flat)[:32].std(), (noisy - flat)[32:].std()
    assert bright_std == pytest.approx(np.sqrt(0.004 * 0.9 + 0.002 ** 2), rel=0.1)
    assert bright_std > 2.5 * dark_std  # signal-dependent

    errors = [np.abs(apply(clear, depth, dataclasses.replace(base, jpeg_quality=q)) - hazy).mean() for q in (95, 60, 20)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_same_seed_same_image(photo):
    clear, depth = photo
    model = HazeModel(low_light=True)
    a, pa = model.synthesize(clear, depth, np.random.default_rng(1))
    b, pb = model.synthesize(clear, depth, np.random.default_rng(1))
    c, _ = model.synthesize(clear, depth, np.random.default_rng(2))
    assert pa == pb and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(apply(clear, depth, pa), a)  # the parameters alone reproduce the image


def test_ranges_are_checked():
    with pytest.raises(ValueError, match="beta"):
        HazeModel(beta=(2.0, 1.0))
    with pytest.raises(ConfigError, match="data.haze"):
        check_config(config_from_dict({"data": {"dataset": "synthetic", "haze": {"fog": True}}}))
    config = config_from_dict({"data": {"dataset": "synthetic", "haze": {"jpeg": False, "beta": [1.0, 3.0]}}})
    assert HazeModel(**config.data.haze).beta == (1.0, 3.0)


def test_dataset_script_writes_a_valid_reside_layout(tmp_path):
    clean, depths = tmp_path / "clean", tmp_path / "depth"
    clear, depth = load_photo("motorcycle_left", 80)
    write_image(clean / "moto.png", clear)
    write_image(clean / "astro.png", load_photo("astronaut", 72)[0])
    depths.mkdir()
    np.save(depths / "moto.npy", depth)
    for run in ("a", "b"):
        synthesize_haze.main(synthesize_haze.parse_args(
            ["--clean", str(clean), "--depth", str(depths), "--out", str(tmp_path / run), "--variants", "2",
             "--seed", "3", "--haze", "low_light=true", "beta=[1.0, 2.0]"]))
    names = validate_paired_folder(tmp_path / "a")
    assert names == ["astro_0.png", "astro_1.png", "moto_0.png", "moto_1.png"]
    records = [json.loads(line) for line in (tmp_path / "a" / "haze_parameters.jsonl").read_text().splitlines()]
    assert [r["depth"] for r in records] == [False, False, True, True] and all(1.0 <= r["beta"] <= 2.0 for r in records)
    assert all((tmp_path / "a" / d / n).read_bytes() == (tmp_path / "b" / d / n).read_bytes()
               for d in ("hazy", "GT") for n in names)  # same seed, same files
    item = PairedImageDataset(tmp_path / "a", names, "test")[2]
    assert item["hazy"].shape == item["gt"].shape and item["hazy"].std() < item["gt"].std()  # haze (and low light) lower contrast
    with pytest.raises(FileExistsError):
        synthesize_haze.main(synthesize_haze.parse_args(["--clean", str(clean), "--out", str(tmp_path / "a")]))


def test_training_set_synthesises_from_a_clean_folder(tmp_path):
    write_image(tmp_path / "a.png", load_photo("rocket", 70)[0])
    data = SyntheticHazeDataset("train", crop_size=64, samples_per_epoch=4, clean=CleanImageFolder(tmp_path, min_size=64))
    first, again = data[(0, 5)], data[(0, 5)]
    assert first["hazy"].shape == (3, 64, 64) and first["source"] == "a.png"
    assert (first["hazy"] == again["hazy"]).all()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(Exception, match="broken.png"):
        CleanImageFolder(tmp_path)
