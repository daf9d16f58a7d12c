"""The one image reader (utils/image.py): orientation, bit depth, alpha, damaged files — the same pixels in
the up-front checks, the training loader, test.py and predict.py."""
import csv
import math
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import predict
import test as test_script
from datasets import DatasetError, PairedImageDataset, validate_paired_folder
from models import load_model
from utils.image import ImageError, check_image, image_size, read_image, to_tensor

from .conftest import write_checkpoint

UPRIGHT = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # H 40, W 56: not square


def save_with_orientation(path, stored: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), **({"quality": 100} if path.suffix == ".jpg" else {}))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (IHDR with its CRC) announcing width×height RGB, then the image ends."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_photo_viewers_and_opencv_do(tmp_path, orientation, suffix):
    path = tmp_path / f"photo{suffix}"
    save_with_orientation(path, UPRIGHT, orientation)
    ours = read_image(path)
    viewer = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    protocol = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # the evaluation protocol's reader
    assert ours.shape == viewer.shape == protocol.shape
    assert np.array_equal(ours, protocol.astype(np.float32) / 255)
    if suffix == ".png":  # lossless: PIL's decode is the same pixels
        assert np.array_equal(ours, viewer.astype(np.float32) / 255)
    assert check_image(path) == ((ours.shape[1], ours.shape[0]), None)


def test_sixteen_bit_grayscale_keeps_its_precision(tmp_path):
    gray = (np.arange(40 * 56, dtype=np.uint32).reshape(40, 56) * 29).astype(np.uint16)  # values up to 65,163
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (40, 56, 3) and np.array_equal(image[..., 1], gray.astype(np.float32) / 65535)
    assert image.max() < 1.0  # not clipped to white (an 8-bit conversion made it 255 everywhere)


def test_damaged_and_impossible_files_are_named(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(UPRIGHT).save(good, quality=90)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    zeroed = bytearray(data)
    zeroed[len(data) // 3: len(data) // 3 + 200] = bytes(200)
    (tmp_path / "zeroed.jpg").write_bytes(bytes(zeroed))
    (tmp_path / "tga.png").write_bytes(b"\x00\x00\x02" + bytes(15) + bytes(100))  # not a format OpenCV reads
    (tmp_path / "huge.png").write_bytes(png_claiming(100_000, 100_000))
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    problems = {name: check_image(tmp_path / name)[1] for name in
                ("good.jpg", "truncated.jpg", "zeroed.jpg", "tga.png", "huge.png", "link.png")}
    assert problems["good.jpg"] is None
    assert problems["truncated.jpg"] == "damaged or truncated JPEG (Premature end of JPEG file)"
    assert problems["zeroed.jpg"].startswith("damaged or truncated JPEG (Corrupt JPEG data")
    assert problems["tga.png"].startswith("cannot be decoded as an image")
    assert problems["huge.png"] == "its header claims 100000×100000 pixels, more than 268,435,456; refusing to decode it"
    assert problems["link.png"] == "a broken link (it points to nothing)"
    with pytest.raises(ImageError, match="link.png: a broken link"):
        read_image(tmp_path / "link.png")
    with pytest.raises(ImageError, match="gone.png: no such file"):
        read_image(tmp_path / "gone.png")
    (tmp_path / "album.png").mkdir()
    with pytest.raises(ImageError, match="album.png: a folder, not a file"):
        read_image(tmp_path / "album.png")


def test_the_strict_jpeg_check_goes_by_content_not_by_name(tmp_path):
    """A pair prepared from SOTS-outdoor has GT/0001_0.8_0.2.jpg, a link to a PNG; a damaged JPEG named .png is
    still decoded strictly. image_size reads the header alone, as the reader turns the image."""
    Image.fromarray(UPRIGHT).save(tmp_path / "png.png")
    (tmp_path / "png_named.jpg").symlink_to(tmp_path / "png.png")
    Image.fromarray(UPRIGHT).save(tmp_path / "good.jpg", quality=90)
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut_named.png").write_bytes(data[: len(data) // 2])
    assert check_image(tmp_path / "png_named.jpg") == ((56, 40), None)
    assert check_image(tmp_path / "cut_named.png")[1] == "damaged or truncated JPEG (Premature end of JPEG file)"
    save_with_orientation(tmp_path / "turned.jpg", UPRIGHT, 6)
    assert image_size(tmp_path / "turned.jpg") == read_image(tmp_path / "turned.jpg").shape[1::-1] == (40, 56)
    with pytest.raises(ImageError, match="notes.png: not an image file"):
        image_size(tmp_path / "notes.png") if (tmp_path / "notes.png").write_text("hello") else None


def rotated_pair(root, exif: bool):
    """A pair whose hazy JPEG the camera stored sideways (EXIF orientation 6: turn 90° clockwise to view);
    `exif=False`: the same file without the tag, i.e. really sideways."""
    hazy = (UPRIGHT * 0.5 + 60).astype(np.uint8)
    for folder in ("GT", "hazy"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(UPRIGHT).save(root / "GT" / "p.png")
    sideways = np.rot90(hazy, k=1)  # stored turned 90° counter-clockwise
    save_with_orientation(root / "hazy" / "p.png", sideways, 6 if exif else 1)
    return hazy


def test_a_rotated_pair_has_one_orientation_in_the_check_the_loader_test_py_and_predict_py(tmp_path):
    hazy = rotated_pair(tmp_path / "data", exif=True)
    assert validate_paired_folder(tmp_path / "data") == ["p.png"]  # the check: sizes agree once turned upright
    item = PairedImageDataset(tmp_path / "data", ["p.png"], "test")[0]  # the loader
    assert torch.equal(item["hazy"], to_tensor(hazy / np.float32(255)))
    assert torch.equal(item["gt"], to_tensor(UPRIGHT / np.float32(255)))

    write_checkpoint(tmp_path / "net.pt")
    summary = test_script.run(test_script.parse_args(["--checkpoint", str(tmp_path / "net.pt"), "--data", str(tmp_path / "data"),
                                                      "--out", str(tmp_path / "test")]))
    with torch.no_grad():
        output = load_model(tmp_path / "net.pt")(item["hazy"][None]).clamp(-1, 1)[0] * 0.5 + 0.5
    expected = 10 * math.log10(1 / (output - (item["gt"] * 0.5 + 0.5)).square().mean().item())
    with open(tmp_path / "test" / "per_image.csv") as f:
        assert float(next(csv.DictReader(f))["psnr"]) == pytest.approx(expected, abs=1e-4) == summary["psnr"]
    (written,) = predict.run(predict.parse_args([str(tmp_path / "data" / "hazy" / "p.png"), "--checkpoint",
                                                 str(tmp_path / "net.pt"), "--out", str(tmp_path / "predict"), "--amp",
                                                 "off"]))  # test.py's precision
    tested = read_image(tmp_path / "test" / "images" / "p.png")
    assert tested.shape == (40, 56, 3) and np.array_equal(read_image(written), tested)  # upright, the same pixels


def test_a_pair_really_stored_sideways_is_refused_before_training(tmp_path):
    rotated_pair(tmp_path / "data", exif=False)
    with pytest.raises(DatasetError, match=r"hazy/p.png: size 40×56 differs from .*GT/p.png \(56×40\)"):
        validate_paired_folder(tmp_path / "data")


def test_every_real_photo_passes_the_check_and_damage_is_caught_whatever_the_jpeg_layout(real_hazy, reside_samples, tmp_path):
    """42 real photos; test12.jpg has a chroma layout libjpeg-turbo's API cannot classify (decoded by Pillow instead)."""
    photos = sorted(p for folder in (real_hazy, reside_samples / "hazy", reside_samples / "GT") for p in folder.iterdir()
                    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    assert len(photos) == 42
    for path in photos:
        size, problem = check_image(path)
        assert problem is None, (path, problem)
        assert size == read_image(path).shape[1::-1]
    data = (real_hazy / "test12.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 97 // 100])  # OpenCV refuses this layout's truncation itself
    assert check_image(tmp_path / "cut.jpg")[1] == "cannot be decoded as an image (damaged, or not an image format OpenCV reads)"
