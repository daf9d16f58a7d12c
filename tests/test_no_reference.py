"""No-reference quality (utils/no_reference.py) on real photographs."""
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import minimum_filter

from utils.image import read_image
from utils.no_reference import dark_channel, haze_density, matlab_half_size, niqe

REFERENCE = json.loads((Path(__file__).parent / "reference" / "niqe_basicsr.json").read_text())


def shared_image(real_hazy: Path, key: str) -> np.ndarray:
    """Keys are real_hazy file names, or hazy/… and GT/… of reside_samples."""
    path = real_hazy.parent / "reside_samples" / key if "/" in key else real_hazy / key
    return (read_image(path) * 255).round().astype(np.uint8)


def test_niqe_agrees_with_the_basicsr_port_of_the_matlab_release(real_hazy):
    """Reference: BasicSR 1.4.2's niqe() on the same grey images with the same LIVE pristine model
    (tests/reference/make_niqe_basicsr.py). Measured: largest relative difference 0.93% (indoor.jpg),
    median 0.005%."""
    differences = {key: abs(niqe(shared_image(real_hazy, key)) / value - 1) for key, value in REFERENCE.items()}
    assert len(differences) == 31  # 21 real hazy photos, 5 RESIDE hazy and their 5 clear images
    assert max(differences.values()) < 0.01, max(differences.items(), key=lambda kv: kv[1])
    assert np.median(list(differences.values())) < 1e-3


def test_niqe_input_checks():
    with pytest.raises(ValueError, match="two 96×96 blocks"):
        niqe(np.zeros((100, 150, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        niqe(np.zeros((200, 200), np.uint8))


def test_half_size_matches_matlab_on_a_ramp():
    # MATLAB: imresize(1:8, 0.5) of a linear ramp is the ramp at the output centres, except near the borders
    ramp = np.tile(np.arange(1.0, 17.0), (16, 1))
    half = matlab_half_size(ramp)
    assert half.shape == (8, 8) and np.allclose(half[:, 2:-2], np.arange(1.5, 17.0, 2)[2:-2])


def test_haze_density_is_higher_for_hazy_than_clear_images(reside_samples):
    for path in sorted((reside_samples / "GT").iterdir()):
        clear, hazy = read_image(path), read_image(reside_samples / "hazy" / path.name)
        assert haze_density(hazy) > haze_density(clear) + 0.1, path.name


def test_dark_channel_matches_a_direct_computation(reside_samples):
    image = read_image(sorted((reside_samples / "hazy").iterdir())[0])
    expected = minimum_filter(image.min(axis=2), size=15, mode="nearest")
    assert np.allclose(dark_channel(image), expected, atol=1e-7)
    assert dark_channel((image * 255).round().astype(np.uint8)).max() <= 1.0
