import os

import cv2
import numpy as np
import pytest
import torch

from datasets import (
    DatasetError,
    PairedAugment,
    PairedImageDataset,
    SeededSampler,
    SyntheticHazeDataset,
    holdout_split,
    validate_paired_folder,
)
from datasets.paired import scenes_by_clear_image
from datasets.synthetic import TEST_HAZE, TEST_PHOTOS, add_haze, load_photo
from utils.image import read_image


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_pairs(root, count=4, size=(40, 48)):
    rng = np.random.default_rng(0)
    for i in range(count):
        clear = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        _write(root / "GT" / f"{i:02d}.png", clear)
        _write(root / "hazy" / f"{i:02d}.png", (clear * 0.5 + 100).astype(np.uint8))
    return root


def test_valid_folder_lists_sorted_pairs(tmp_path):
    assert validate_paired_folder(make_pairs(tmp_path), min_size=32) == ["00.png", "01.png", "02.png", "03.png"]


def _problem(tmp_path, damage, min_size=None):
    root = make_pairs(tmp_path)
    damage(root)
    with pytest.raises(DatasetError) as error:
        validate_paired_folder(root, min_size=min_size)
    return str(error.value)


def test_missing_partner_is_reported(tmp_path):
    message = _problem(tmp_path, lambda root: (root / "hazy" / "01.png").unlink())
    assert "GT/01.png: no hazy partner" in message and "1 problem(s)" in message


def test_unreadable_image_is_reported(tmp_path):
    message = _problem(tmp_path, lambda root: (root / "hazy" / "02.png").write_bytes(b"not an image"))
    assert "hazy/02.png: cannot be decoded as an image" in message


def test_truncated_image_is_reported(tmp_path):
    def truncate(root):
        path = root / "GT" / "03.jpg"
        _write(path, np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8))
        _write(root / "hazy" / "03.jpg", np.zeros((40, 48, 3), np.uint8))
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert "GT/03.jpg: damaged or truncated JPEG (Premature end of JPEG file)" in _problem(tmp_path, truncate)


def test_transparent_images_are_reported_grayscale_and_opaque_alpha_are_read(tmp_path):
    def recolour(root):
        _write(root / "hazy" / "00.png", np.full((40, 48), 77, np.uint8))                   # grayscale: gray RGB
        _write(root / "GT" / "01.png", np.dstack([np.zeros((40, 48, 3), np.uint8), np.full((40, 48), 255, np.uint8)]))
        _write(root / "GT" / "02.png", np.zeros((40, 48, 4), np.uint8))                     # alpha 0: transparent
    message = _problem(tmp_path, recolour)
    assert "GT/02.png: has transparent pixels" in message and "1 problem(s)" in message
    assert np.array_equal(read_image(tmp_path / "hazy" / "00.png"), np.full((40, 48, 3), np.float32(77) / 255))
    assert np.array_equal(read_image(tmp_path / "GT" / "01.png"), np.zeros((40, 48, 3), np.float32))


def test_size_mismatch_is_reported(tmp_path):
    message = _problem(tmp_path, lambda root: _write(root / "hazy" / "02.png", np.zeros((40, 50, 3), np.uint8)))
    assert "hazy/02.png: size 50×40 differs from" in message


def test_image_smaller_than_the_crop_is_reported(tmp_path):
    assert "smaller than the 48×48 crop" in _problem(tmp_path, lambda root: None, min_size=48)


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="hazy: no such folder"):
        validate_paired_folder((tmp_path / "GT").mkdir() or tmp_path)


def test_holdout_split_is_deterministic_and_disjoint():
    names = [f"{i:04d}.png" for i in range(500)]
    train, held_out = holdout_split(names, 0.02)
    assert len(held_out) == 10 and not set(train) & set(held_out) and len(train) + len(held_out) == 500
    assert holdout_split(names[::-1], 0.02)[1] == held_out  # independent of listing order
    grown = holdout_split(names + ["new.png"], 0.02)[1]
    assert len(set(grown) & set(held_out)) >= 9  # adding a file moves at most one name


def test_the_hazy_versions_of_one_clear_image_are_held_out_together(tmp_path):
    """ITS-like data (scripts/prepare_data.py: the GT entries of one scene's hazy images are links to one file): a
    scene is held out whole, so that validation never shows a scene the network trained on under other haze."""
    root = tmp_path / "train"
    (root / "GT").mkdir(parents=True)
    for scene in range(1, 21):
        clear = root / f"clear_{scene}.png"
        clear.write_bytes(b"")
        for k in range(1, 6):
            os.link(clear, root / "GT" / f"{scene}_{k}_0.9.png")
    names = sorted(p.name for p in (root / "GT").iterdir())
    scene_of = scenes_by_clear_image(root, names)
    train, held_out = holdout_split(names, 0.1, scene_of=scene_of)
    assert len(held_out) == 10 and len({n.split("_")[0] for n in held_out}) == 2
    assert not {n.split("_")[0] for n in held_out} & {n.split("_")[0] for n in train}
    assert holdout_split(names, 0.1)[1] != held_out  # name by name, scenes would be split


def test_paired_dataset_modes(tmp_path):
    root = make_pairs(tmp_path)
    names = validate_paired_folder(root)
    test_item = PairedImageDataset(root, names, "test")[1]
    expected = torch.from_numpy(read_image(root / "hazy" / "01.png")).permute(2, 0, 1) * 2 - 1
    assert torch.equal(test_item["hazy"], expected) and test_item["name"] == "01.png"
    assert PairedImageDataset(root, names, "valid", crop_size=32)[0]["gt"].shape == (3, 32, 32)
    train = PairedImageDataset(root, names, "train", PairedAugment(32, rotate90=True))
    a, b, c = train[(0, 7)], train[(0, 7)], train[(0, 8)]
    assert a["hazy"].shape == (3, 32, 32)
    assert torch.equal(a["hazy"], b["hazy"]) and torch.equal(a["gt"], b["gt"])  # same seed, same sample
    assert not torch.equal(a["hazy"], c["hazy"])


def test_augmentation_keeps_pairs_aligned_and_edge_decay_reaches_borders():
    image = np.arange(60 * 80, dtype=np.float32).reshape(60, 80, 1)
    rng = np.random.default_rng(0)
    uniform = [PairedAugment(20)([image, image + 1], rng) for _ in range(300)]
    assert all(np.array_equal(a + 1, b) for a, b in uniform)
    edge = PairedAugment(20, edge_decay=1.0)
    corners = [edge([image], rng)[0] for _ in range(300)]

    def touches(crops):
        return np.mean([c.min() % 80 in (0, 60) or c.min() // 80 in (0, 40) for c in crops])
    assert touches(corners) > touches([a for a, _ in uniform]) + 0.2


def test_seeded_sampler_is_reproducible_per_epoch():
    sampler = SeededSampler(10, seed=3, batch_size=10)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10))
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_haze_model():
    clear = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    assert np.allclose(add_haze(clear, np.zeros((8, 8)), 2.0, 0.9), clear)  # zero depth: no haze
    far = add_haze(clear, np.ones((8, 8)), 50.0, 0.9)
    assert np.allclose(far, 0.9, atol=1e-6)  # infinite haze: only airlight
    t = np.exp(-1.0 * 0.5)
    assert np.allclose(add_haze(clear, np.full((8, 8), 0.5), 1.0, 0.8), clear * t + 0.8 * (1 - t))


def test_synthetic_dataset():
    clear, depth = load_photo("motorcycle_left", 192)
    assert clear.shape[:2] == depth.shape == (192, 285) and 0 <= depth.min() and depth.max() <= 1
    train = SyntheticHazeDataset("train", crop_size=32, samples_per_epoch=8)
    assert torch.equal(train[(0, 5)]["hazy"], train[(0, 5)]["hazy"]) and train[(0, 5)]["hazy"].shape == (3, 32, 32)
    valid = SyntheticHazeDataset("valid", crop_size=32, samples_per_epoch=4)
    assert torch.equal(valid[2]["hazy"], valid[2]["hazy"])
    test = SyntheticHazeDataset("test")
    assert len(test) == len(TEST_PHOTOS) * len(TEST_HAZE) == 6
    item = test[0]
    assert item["name"] == "chelsea_beta0.8_A0.8.png" and item["hazy"].shape[1] == 192
    # the classic model with the item's (β, A) = (0.8, 0.8) on chelsea's depth proxy, in float64:
    # measured max difference 1.1e-7 (float32 rounding of exp and the blend)
    clear, depth = load_photo("chelsea", 192)
    gt, hazy = ((item[k].double().numpy().transpose(1, 2, 0) + 1) / 2 for k in ("gt", "hazy"))
    t = np.exp(-0.8 * depth.astype(np.float64))[..., None]
    assert np.abs(gt - clear).max() <= 1e-7 and np.abs(hazy - (gt * t + 0.8 * (1 - t))).max() <= 1e-6
