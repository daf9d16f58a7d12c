"""No-reference quality (metrics/no_reference.py, metrics/fade.py) on real photographs, against independent
reference values."""
import csv
import hashlib
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import evaluate_real
import metrics.real_haze
from metrics import entropy, fade, piqe
from metrics.fade import MODEL_FOLDER
from metrics.inputs import UndefinedMeasure
from metrics.no_reference import brisque, matlab_half_size, niqe
from utils.cli import UserError
from utils.image import read_image, to_uint8

from .conftest import LABELS_PRIOR, write_checkpoint

REFERENCE = json.loads((Path(__file__).parent / "reference" / "niqe_basicsr.json").read_text())
BRISQUE_REFERENCE = json.loads((Path(__file__).parent / "reference" / "brisque_package.json").read_text())


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
    # measured 0.0093 (indoor.jpg; AVX-512 and AVX2); ±1-ulp noise in the Gaussian filtering moves it to 0.013
    assert max(differences.values()) < 0.03, max(differences.items(), key=lambda kv: kv[1])
    assert np.median(list(differences.values())) < 1e-3  # measured 5.1e-5; 1e-4 with the 1-ulp noise


def test_brisque_agrees_with_the_brisque_package(real_hazy):
    """Reference: the `brisque` 0.2.0 package itself on the same pixels (tests/reference/
    make_brisque_reference.py). Measured: largest difference 0.65 points (test6.jpg, 70.02 vs 69.36), 19 of
    32 photos identical to 1e-3. The package classifies MSCN products by sign, and in flat, saturated
    regions its round-off makes exact zeros tiny negatives; that shifts its one-sided variances slightly."""
    differences = {key: abs(brisque(shared_image(real_hazy, key)) - value) for key, value in BRISQUE_REFERENCE.items()}
    assert len(differences) == 32  # 22 real hazy photos, 5 RESIDE hazy and their 5 clear images
    # measured 0.654 (test6.jpg; AVX-512 and AVX2); ±1-ulp noise in the Gaussian filtering moves the largest
    # difference to 1.6–2.5 points (the sign classification above amplifies it)
    assert max(differences.values()) < 4.0, max(differences.items(), key=lambda kv: kv[1])
    assert np.median(list(differences.values())) < 1e-2  # measured 1.2e-4; 1.7e-4 with the 1-ulp noise


def test_brisque_prefers_a_clean_photo_to_its_noisy_and_blurred_copies(real_hazy):
    photo = shared_image(real_hazy, "test14.jpg")  # BRISQUE 1.5: a sharp, clean photo
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)
    assert brisque(photo) + 20 < brisque(noisy) and brisque(photo) + 20 < brisque(blurred)
    with pytest.raises(ValueError, match="32×32"):
        brisque(photo[:20])


def test_half_size_matches_matlab_on_a_ramp():
    # MATLAB: imresize(1:8, 0.5) of a linear ramp is the ramp at the output centres, except near the borders
    ramp = np.tile(np.arange(1.0, 17.0), (16, 1))
    half = matlab_half_size(ramp)
    assert half.shape == (8, 8) and np.allclose(half[:, 2:-2], np.arange(1.5, 17.0, 2)[2:-2])


def reference_rows(real_hazy: Path) -> list[dict]:
    """FADE, PIQE and entropy of 22 real hazy photos and 10 RESIDE hazy/clear pairs, computed by independent code:
    FADE by the authors' MATLAB release under GNU Octave, linked once to a BLAS that fuses multiply-adds (`fade`)
    and once to one that does not (`fade_unfused`); entropy by Octave; PIQE by IQA-PyTorch (pyiqa 0.1.16)."""
    with open(real_hazy.parent / "no_reference" / "reference_values.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 42
    return rows


def photo(real_hazy: Path, name: str) -> np.ndarray:
    return (read_image(real_hazy.parent / name) * 255).round().astype(np.uint8)


def test_fade_reproduces_the_release_on_real_photos(real_hazy):
    """The release's own algorithm gives different values under fused and unfused arithmetic wherever flat regions
    decide whether a patch is dropped; a faithful implementation lies within 1e-4 relative plus twice that spread.
    This one accumulates its filter taps unfused, in Octave's order: it reproduces `fade_unfused` itself."""
    outside, off_unfused = [], {}
    for row in reference_rows(real_hazy):
        value, fused, unfused = fade(photo(real_hazy, row["file"])), float(row["fade"]), float(row["fade_unfused"])
        if abs(value / fused - 1) > 1e-4 + 2 * abs(fused - unfused) / fused:
            outside.append((row["file"], value, fused, unfused))
        off_unfused[row["file"]] = abs(value / unfused - 1)
    assert not outside
    assert max(off_unfused.values()) < 1e-8, max(off_unfused.items(), key=lambda kv: kv[1])  # measured 2e-10
    # what README.md and docs/real_haze.md say of the release's own spread: up to 4.2%, identical on 31 of 42
    spread = [abs(float(r["fade"]) - float(r["fade_unfused"])) / float(r["fade"]) for r in reference_rows(real_hazy)]
    assert round(max(spread), 3) == 0.042 and sum(s < 1e-6 for s in spread) == 31


def test_piqe_and_entropy_reproduce_the_reference_values(real_hazy):
    piqe_off, entropy_off = {}, {}
    for row in reference_rows(real_hazy):
        image = photo(real_hazy, row["file"])
        piqe_off[row["file"]] = abs(piqe(image) / float(row["piqe"]) - 1)
        entropy_off[row["file"]] = abs(entropy(image) - float(row["entropy"]))
    assert max(piqe_off.values()) < 1e-6, max(piqe_off.items(), key=lambda kv: kv[1])  # measured 4e-10
    assert max(entropy_off.values()) < 1e-8, max(entropy_off.items(), key=lambda kv: kv[1])  # measured 5e-11


def test_fade_ships_the_release_model_files(real_hazy):
    released = {"natural_fogfree_image_features_ps8.mat": "9a1812bcb2318908d864a53163e32cb430e92dddb88579ea02ee944f020d69cb",
                "natural_foggy_image_features_ps8.mat": "1de98cec133b367f6d2d9cfa039a2d53892a1606ea9f4b216d5b08f73b346afd"}
    for name, digest in released.items():
        shipped = (MODEL_FOLDER / name).read_bytes()
        assert hashlib.sha256(shipped).hexdigest() == digest
        assert shipped == (real_hazy.parent / "no_reference" / name).read_bytes()
    assert "The University of Texas at Austin" in (MODEL_FOLDER / "NOTICE").read_text()


def test_entropy_of_known_histograms():
    flat = np.full((32, 32, 3), 77, np.uint8)
    halves = flat.copy()
    halves[:16] = 200
    quarters = np.concatenate([np.full((8, 32, 3), v, np.uint8) for v in (0, 60, 120, 250)])
    assert (entropy(flat), entropy(halves), entropy(quarters)) == (0.0, 1.0, 2.0)
    assert entropy(quarters / 255.0) == 2.0  # [0, 1] floats are read as 8-bit values


def test_fade_sees_less_fog_in_clear_images_than_in_their_hazy_versions(reside_samples):
    for path in sorted((reside_samples / "GT").iterdir()):
        clear, hazy = (photo(reside_samples, f"reside_samples/{kind}/{path.name}") for kind in ("GT", "hazy"))
        assert fade(clear) * 1.5 < fade(hazy), path.name


MEASURES = {"FADE": fade, "PIQE": piqe, "entropy": entropy, "NIQE": niqe, "BRISQUE": brisque}


def textured(height: int = 200, width: int = 240) -> np.ndarray:
    """A photo-like uint8 RGB image every measure has a value for: gradients and noise."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([x, y, 0.5 * (x + y)], axis=2) * 180 + rng.normal(0, 12, (height, width, 3)) + 30
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("label", MEASURES)
def test_every_measure_takes_uint8_or_unit_floats_rgb_or_grey_alike(label):
    measure, rgb = MEASURES[label], textured()
    value = measure(rgb)
    assert math.isfinite(value) and measure(rgb / 255.0) == value  # float in [0, 1]: the same pixels, the same score
    grey = rgb[:, :, 1]
    assert measure(grey) == measure(grey[:, :, None]) == measure(np.repeat(grey[:, :, None], 3, axis=2))


REFUSED = {  # what a measure is given → what its one-line refusal says
    "float 0–3": (lambda rgb: rgb / 255.0 * 3, r"float values outside \[0, 1\] \(from 0 to 2\.9\d+\); give uint8"),
    "negative float": (lambda rgb: rgb / 255.0 - 0.5, r"float values outside \[0, 1\] \(from -0\.5 to 0\.4\d+\)"),
    "infinity": (lambda rgb: np.where(rgb > 128, np.inf, rgb / 255.0), r"float values outside \[0, 1\] \(from 0 to inf\)"),
    "NaN": (lambda rgb: np.where(rgb > 128, np.nan, rgb / 255.0), r"the image holds NaN values"),
    "four channels": (lambda rgb: np.concatenate([rgb, rgb[:, :, :1]], axis=2), r"shape \(200, 240, 4\); expected H×W×3"),
    "a batch": (lambda rgb: rgb[None], r"shape \(1, 200, 240, 3\); expected H×W×3 RGB or H×W grey"),
    "one row": (lambda rgb: rgb.ravel(), r"shape \(144000,\); expected"),
    "16-bit": (lambda rgb: rgb.astype(np.uint16) * 257, r"uint16 pixels; expected uint8, or float in \[0, 1\]"),
    "empty": (lambda rgb: rgb[:0], r"an empty image \(shape \(0, 240, 3\)\)"),
}


@pytest.mark.parametrize("case", REFUSED)
@pytest.mark.parametrize("label", MEASURES)
def test_every_measure_refuses_what_it_cannot_take_in_one_line(label, case):
    make, expected = REFUSED[case]
    with pytest.raises(ValueError) as refused:
        MEASURES[label](make(textured()))
    message = str(refused.value)
    assert message.startswith(f"{label}: ") and "\n" not in message and re.search(expected, message), message
    assert not isinstance(refused.value, UndefinedMeasure)


FLAT = {"flat grey": 128, "all black": 0, "all white": 255}
UNDEFINED = {"FADE": {"flat grey": "flat", "all black": "flat", "all white": "flat"},  # measure → image → reason
             "NIQE": {"flat grey": "flat", "all black": "flat", "all white": "flat"},
             "BRISQUE": {"flat grey": "flat", "all black": "flat", "all white": "flat"},
             "PIQE": {"all black": "all-black"}}
DEFINED = {("PIQE", "flat grey"): 100.0, ("PIQE", "all white"): 100.0,  # no active block: the reference's 100
           ("entropy", "flat grey"): 0.0, ("entropy", "all black"): 0.0, ("entropy", "all white"): 0.0}


@pytest.mark.parametrize("image", FLAT)
@pytest.mark.parametrize("label", MEASURES)
def test_a_flat_photo_has_no_value_where_a_measure_is_undefined_and_no_warning(label, image):
    photo = np.full((200, 240, 3), FLAT[image], np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning (invalid value, empty slice) reaches the user
        if image in UNDEFINED.get(label, {}):
            with pytest.raises(UndefinedMeasure, match=rf"^{label} is undefined.*{UNDEFINED[label][image]}"):
                MEASURES[label](photo)
        else:
            value = MEASURES[label](photo)
            assert value == DEFINED[label, image] and math.copysign(1, value) == 1  # entropy 0.0, not -0.0


def test_measures_of_a_grey_photo_warn_of_nothing(real_hazy):
    photo = shared_image(real_hazy, "canyon.png")
    grey = np.repeat(photo.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FADE's colour contrast of a grey photo is 0/0, made 0 as in the release
        assert all(math.isfinite(measure(grey)) for measure in MEASURES.values())


def test_an_image_too_small_for_a_measure_has_no_value():
    for label, shape, expected in (("FADE", (12, 40), "16×16"), ("PIQE", (40, 12), "16×16"),
                                   ("NIQE", (100, 150), "two 96×96 blocks"), ("BRISQUE", (20, 60), "32×32")):
        with pytest.raises(UndefinedMeasure, match=rf"^{label} needs at least .*{expected}"):
            MEASURES[label](textured(*shape))


def test_real_haze_evaluation_script(real_hazy, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("canyon.png", "test14.jpg", "test17.bmp"):
        shutil.copy(real_hazy / name, photos / name)
    for name, args in (("mixdehazenet-t", {}), ("mixcl-t", {"num_labels": 2})):
        write_checkpoint(tmp_path / f"{name}.pt", name, args, LABELS_PRIOR)
    argv = [str(photos), "--checkpoint", str(tmp_path / "mixdehazenet-t.pt"), "--out", str(tmp_path / "out"),
            "--max-side", "200", "--compare"]
    summary = evaluate_real.run(evaluate_real.parse_args(argv))
    with open(tmp_path / "out" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["canyon.png", "test14.jpg", "test17.bmp"] and summary["images"] == 3
    for name in ("fade", "piqe", "entropy", "niqe", "brisque"):
        assert summary[f"input_{name}"] == pytest.approx(np.mean([float(r[f"input_{name}"]) for r in rows]))
    assert "haze_density" not in rows[0]
    shrunk = to_uint8(evaluate_real.shrink(read_image(photos / "canyon.png"), 200))
    assert float(rows[0]["input_fade"]) == pytest.approx(fade(shrunk), rel=1e-12)  # the photo at --max-side
    improved = sum(float(r["output_entropy"]) > float(r["input_entropy"]) for r in rows)
    assert summary["entropy_improved"] == improved and summary["fade_improved"] == sum(
        float(r["output_fade"]) < float(r["input_fade"]) for r in rows)
    output = read_image(tmp_path / "out" / "outputs" / "canyon.png")
    side_by_side = read_image(tmp_path / "out" / "comparisons" / "canyon.jpg")
    assert max(output.shape[:2]) == 200 and side_by_side.shape[1] == 2 * output.shape[1] + 8

    mixcl = [str(photos), "--checkpoint", str(tmp_path / "mixcl-t.pt"), "--out", str(tmp_path / "cl"), "--max-side", "200"]
    with pytest.raises(Exception, match="--label"):
        evaluate_real.run(evaluate_real.parse_args(mixcl))
    assert evaluate_real.run(evaluate_real.parse_args(mixcl + ["--label", "outdoor"]))["images"] == 3

    (photos / "tiny.png").write_bytes(cv2.imencode(".png", np.zeros((80, 120, 3), np.uint8))[1].tobytes())
    with pytest.raises(Exception, match=r"1 problem\(s\).*\n.*tiny.png: 120×80 is too small for NIQE"):
        evaluate_real.run(evaluate_real.parse_args(argv))  # found before any photo is dehazed


def flat_photos_beside(real_hazy: Path, folder: Path) -> Path:
    """Two real hazy photos, and a flat grey, an all-black and an all-white one (a dense fog can be nearly flat)."""
    folder.mkdir()
    for name in ("canyon.png", "test14.jpg"):
        shutil.copy(real_hazy / name, folder / name)
    for name, value in (("black.png", 0), ("grey.png", 128), ("white.png", 255)):
        cv2.imwrite(str(folder / name), np.full((100, 200, 3), value, np.uint8))
    return folder


def test_an_evaluation_names_flat_photos_undefined_and_an_interrupted_one_goes_on(real_hazy, tmp_path, monkeypatch, capsys):
    argv = [str(flat_photos_beside(real_hazy, tmp_path / "photos")), "--checkpoint", str(write_checkpoint(tmp_path / "net.pt")),
            "--out", str(tmp_path / "out"), "--max-side", "200"]
    scored, interruptions, score_photo = [], [KeyboardInterrupt], metrics.real_haze.score_photo

    def interrupted_at_the_third_photo(image):  # input and output of each photo; once
        scored.append(image.shape)
        if len(scored) == 5 and interruptions:
            raise interruptions.pop()
        return score_photo(image)
    monkeypatch.setattr("metrics.real_haze.score_photo", interrupted_at_the_third_photo)
    with pytest.raises(SystemExit) as stop:
        evaluate_real.main(argv)
    table = tmp_path / "out" / "per_image.csv"
    with open(table) as f:
        assert stop.value.code == 130 and [r["name"] for r in csv.DictReader(f)] == ["black.png", "canyon.png"]
    with open(table, "a") as f:
        f.write("grey.png,grey.png,200,100,0.51")  # the third photo's row, cut short by a kill
    scored.clear()
    summary = evaluate_real.main(argv)
    printed = capsys.readouterr().out
    assert "already scores 2 of these 5 photos: scoring the other 3" in printed and len(scored) == 6
    with open(table) as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["black.png", "canyon.png", "grey.png", "test14.jpg", "white.png"] and summary["images"] == 5
    for name in ("black.png", "grey.png", "white.png"):  # named undefined, with the reason, in the table and the log
        assert {"input: FADE is undefined", "input: NIQE is undefined", "input: BRISQUE is undefined"} <= {
            reason.split(":")[0] + ":" + reason.split(":")[1] for reason in rows[name]["undefined"].split("; ")}
        assert f"{name}: input: NIQE is undefined: 0 of its 2 96×96 blocks have texture" in printed
        assert rows[name]["input_fade"] == "" and rows[name]["input_entropy"] == "0.0"
    assert "input: PIQE is undefined for an all-black image" in rows["black.png"]["undefined"]
    assert rows["canyon.png"]["undefined"] == rows["test14.jpg"]["undefined"] == ""
    for name, measure in metrics.real_haze.MEASURES.items():  # over the photos with both values, the rest counted
        pairs = [(float(r[f"input_{name}"]), float(r[f"output_{name}"])) for r in rows.values()
                 if r[f"input_{name}"] and r[f"output_{name}"]]
        assert summary[f"input_{name}"] == pytest.approx(np.mean([a for a, _ in pairs]), rel=1e-12)
        assert summary[f"output_{name}"] == pytest.approx(np.mean([b for _, b in pairs]), rel=1e-12)
        assert summary[f"{name}_improved"] == sum(measure.improves(a, b) for a, b in pairs)
        assert summary[f"{name}_left_out"] == 5 - len(pairs)
    assert summary["fade_left_out"] == summary["niqe_left_out"] == 3 and summary["entropy_left_out"] == 0
    assert f"(better on {summary['fade_improved']} of 2; 3 left out: undefined)" in printed
    assert len(list((tmp_path / "out" / "outputs").iterdir())) == 5
    with pytest.raises(UserError, match=r"per_image.csv holds scores of another evaluation \(max_side 200 \(now 300\)\)"):
        evaluate_real.main(argv[:-1] + ["300"])
    with pytest.raises(UserError, match=r"per_image.csv scores photos not among the inputs \(black.png, canyon.png, grey"):
        evaluate_real.main([str(tmp_path / "photos" / "white.png"), *argv[1:]])
