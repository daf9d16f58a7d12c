"""The web app: what it does with a photo (inference/webapp.py, no browser needed), and the page itself, served by
app.py on 127.0.0.1 and driven in headless Chromium (Debian's package) with Playwright, and with gradio_client.

The page tests need the app's extras (bash scripts/setup_env.sh app browser) and /usr/bin/chromium; .ci/run
installs both. Without them they skip, saying so; in CI (MIXCL_REQUIRE_SHARED=1) they fail instead."""
import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inference import dehaze
from inference.webapp import AppModel, Photo, ResultFile, dehaze_photo, load_app_models, read_photo, report
from metrics import fade
from models import load_model
from prior import ClipPrior, PriorError
from utils.image import ImageError, read_image, to_uint8

from .conftest import LABELS_PRIOR, REPO, tiny_prior_config, write_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
# headless, and nothing that reaches out: no updates, sync, QUIC or background requests
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width×height pixels over the data of a 4×4 image: what decodes it fails, what
    reads its header only sees the size."""
    ok, encoded = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    header = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = encoded.tobytes()
    path.write_bytes(data[:8] + struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header)) + data[33:])
    return path


@pytest.fixture(scope="module")
def photos(real_hazy, tmp_path_factory) -> dict[str, Path]:
    """A real hazy photo at 64×48 (a JPEG, as most uploads are), and the inputs a page must answer with a message
    or a note: a damaged JPEG, text, a 20000×20000 header, transparency, 1×1, 16 bits, opaque RGBA."""
    folder = tmp_path_factory.mktemp("photos")
    rgb = cv2.resize(cv2.imread(str(real_hazy / "test10.jpg")), (64, 48), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "hazy.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / "damaged.jpg").write_bytes((folder / "hazy.jpg").read_bytes()[:1500])
    (folder / "notes.jpg").write_text("a text file named like a photo")
    png_claiming(folder / "huge.png", 20000, 20000)
    opaque = np.dstack([rgb[:40, :48], np.full((40, 48), 255, np.uint8)])
    cv2.imwrite(str(folder / "rgba.png"), opaque)
    opaque[5, 5, 3] = 0
    cv2.imwrite(str(folder / "transparent.png"), opaque)
    cv2.imwrite(str(folder / "one.png"), rgb[:1, :1])
    cv2.imwrite(str(folder / "deep.png"), rgb[:40, :48].astype(np.uint16) * 256 + np.uint16(100))  # not 8-bit levels
    return {path.name: path for path in folder.iterdir()}


REFUSALS = {
    "damaged.jpg": "damaged.jpg: damaged or truncated JPEG",
    "notes.jpg": "notes.jpg: not an image this page reads",
    "huge.png": "huge.png: 20000×20000 pixels, more than the 50,000,000 this page takes",  # from the header alone
    "transparent.png": "transparent.png: has transparent pixels",
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A MixCL-T with the `labels` prior (each photo's class is given) and a MixDehazeNet-T, random-init."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {"mixcl": write_checkpoint(folder / "mixcl.pt", "mixcl-t", {"num_labels": 2}, LABELS_PRIOR),
            "plain": write_checkpoint(folder / "plain.pt", "mixdehazenet-t")}


def photo8(path: Path) -> np.ndarray:
    return to_uint8(read_image(path))


# --- what the page does with a photo, without a browser --------------------------------------------------------

@pytest.mark.parametrize("name", REFUSALS)
def test_bad_files_are_refused_in_one_line_naming_them(photos, name):
    with pytest.raises(ImageError) as error:
        read_photo(photos[name], name)
    assert str(error.value).startswith(REFUSALS[name]) and "\n" not in str(error.value)


def test_odd_photos_are_read_as_predict_reads_them_with_a_note(photos):
    notes = {"rgba.png": ["its alpha channel is fully opaque and was dropped"], "one.png": [],
             "deep.png": ["it has more than 8 bits per channel: the network saw them all; the result is 8-bit"]}
    for name, expected in notes.items():
        photo = read_photo(photos[name], name)
        assert photo.notes == expected and np.array_equal(photo.pixels, read_image(photos[name]))
    stored = cv2.imread(str(photos["deep.png"]), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(np.round(read_photo(photos["deep.png"], "deep.png").pixels * 65535), stored)  # 16 bits kept


def test_output_is_dehaze_of_the_photo_and_fade_is_evaluate_reals(photos, checkpoints):
    models = load_app_models(list(checkpoints.values()))
    assert list(models) == ["mixcl", "plain"] and models["mixcl"].needs_class and not models["plain"].prior
    hazy = photo8(photos["hazy.jpg"])
    for name, label in (("mixcl", "outdoor"), ("plain", None)):
        stages = []
        result = dehaze_photo(models[name], read_photo(photos["hazy.jpg"], "hazy.jpg"), label, stages.append)
        expected = dehaze(load_model(checkpoints[name]), hazy, label=label)
        assert np.array_equal(result.clear, expected) and np.array_equal(result.hazy, hazy)
        assert (result.fade_hazy, result.fade_clear) == (fade(hazy), fade(expected))  # evaluate_real's 8-bit images
        assert stages == ["CLIP's class", "dehazing", "FADE"] and not result.tiled
    assert "outdoor (given)" in report(dehaze_photo(models["mixcl"], read_photo(photos["hazy.jpg"], "x"), "outdoor"))
    with pytest.raises(PriorError, match=r"mixcl needs the photo's class, one of \['indoor', 'outdoor'\]"):
        dehaze_photo(models["mixcl"], read_photo(photos["hazy.jpg"], "hazy.jpg"))
    one = dehaze_photo(models["plain"], read_photo(photos["one.png"], "one.png"))
    assert one.clear.shape == (1, 1, 3) and one.fade_hazy is None and "FADE needs at least 16×16 pixels" in report(one)
    flat = Photo("grey.png", np.full((48, 64, 3), 0.5, np.float32))  # dense fog can look like this
    grey = dehaze_photo(models["plain"], flat)
    assert grey.fade_hazy is None and "Note: FADE is undefined" in report(grey)


def test_clip_class_probabilities_and_a_chosen_class(photos, tiny_clip_weights, tmp_path):
    checkpoint = write_checkpoint(tmp_path / "clip.pt", "mixcl-t", {"text_dim": 32},
                                  tiny_prior_config(tiny_clip_weights, tmp_path))
    model = AppModel(checkpoint)
    assert model.class_choices() == ["CLIP's class", "indoor", "outdoor"] and not model.needs_class
    photo, hazy = read_photo(photos["hazy.jpg"], "hazy.jpg"), photo8(photos["hazy.jpg"])
    clip = ClipPrior.load("tiny-clip", str(tiny_clip_weights)).probabilities([Image.fromarray(hazy)])[0].tolist()
    by_clip, chosen = dehaze_photo(model, photo), dehaze_photo(model, photo, "indoor")
    assert by_clip.probabilities == dict(zip(("indoor", "outdoor"), clip))
    assert np.array_equal(by_clip.clear, dehaze(load_model(checkpoint), hazy))
    assert np.array_equal(chosen.clear, dehaze(load_model(checkpoint), hazy, label="indoor"))
    assert f"{('indoor', 'outdoor')[int(np.argmax(clip))]} (CLIP's)" in report(by_clip) and "indoor (given)" in report(chosen)


def test_without_clip_weights_a_clip_network_takes_a_chosen_class(tmp_path):
    prior = {"mode": "clip", "clip_pretrained": str(tmp_path / "absent.bin"), "text_features": np.eye(2, 512).tolist()}
    model = AppModel(write_checkpoint(tmp_path / "clip.pt", "mixcl-t", prior=prior))
    assert model.needs_class and model.class_choices() == ["indoor", "outdoor"]
    assert model.clip_missing == f"CLIP weights file {tmp_path / 'absent.bin'}: no such file"
    photo = Photo("x.png", np.random.default_rng(0).random((20, 20, 3), dtype=np.float32))
    with pytest.raises(PriorError, match=f"clip needs the photo's class, one of .*: {model.clip_missing}$"):
        dehaze_photo(model, photo)
    assert dehaze_photo(model, photo, "outdoor").label == "outdoor"


def test_checkpoints_of_one_name_are_told_apart_by_their_path(tmp_path):
    paths = [write_checkpoint((tmp_path / run / "net").mkdir(parents=True) or tmp_path / run / "net" / "best.pt")
             for run in ("a", "b")]
    assert list(load_app_models(paths)) == [str(path) for path in paths]


def test_large_photos_go_through_the_tiles_of_predict(photos, checkpoints):
    model = AppModel(checkpoints["plain"], tile=32, overlap=8)  # 64×48 in 32-pixel tiles, as predict.py --tile 32 runs it
    result = dehaze_photo(model, read_photo(photos["hazy.jpg"], "hazy.jpg"))
    expected = dehaze(load_model(checkpoints["plain"]), photo8(photos["hazy.jpg"]), tile=32, overlap=8)
    assert result.tiled and np.array_equal(result.clear, expected)


def test_the_download_is_the_result_losslessly_and_one_file_is_kept(photos, checkpoints):
    model, files = AppModel(checkpoints["plain"]), ResultFile()
    first = files.write(dehaze_photo(model, read_photo(photos["hazy.jpg"], "hazy.jpg")), "hazy.jpg")
    result = dehaze_photo(model, read_photo(photos["rgba.png"], "rgba.png"))
    second = files.write(result, "rgba.png")
    assert first.name == "hazy-plain.png" and not first.exists() and second.name == "rgba-plain.png"
    assert np.array_equal(photo8(second), result.clear)


# --- the page, in a browser ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page_tools():
    missing = [f"the {name} package" for name in ("gradio", "gradio_client", "playwright")
               if importlib.util.find_spec(name) is None]
    missing += [] if CHROMIUM.is_file() else [f"{CHROMIUM} (Debian's chromium package)"]
    if missing:
        message = (f"needs {', '.join(missing)}: bash scripts/setup_env.sh app browser; apt-get install chromium "
                   f"(.ci/run installs both)")
        if os.environ.get("MIXCL_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(page_tools, checkpoints, tmp_path_factory):
    """`python app.py` with both checkpoints on a free port of 127.0.0.1; its URL once the page answers."""
    folder = tmp_path_factory.mktemp("server")
    port, log = free_port(), open(folder / "app.log", "w")
    command = [sys.executable, "app.py", "--checkpoint", str(checkpoints["mixcl"]), "--checkpoint",
               str(checkpoints["plain"]), "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env=os.environ | {"GRADIO_TEMP_DIR": str(folder / "gradio")})
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 180
    try:
        while True:
            assert process.poll() is None, (folder / "app.log").read_text()
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "app.py did not answer in 3 minutes:\n" + (folder / "app.log").read_text()
                time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def decoded(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_page_shows_dehaze_of_the_photo_and_answers_a_damaged_file(server, photos, checkpoints, tmp_path):
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415 — an extra: page_tools says when it is absent

    url, _ = server
    hazy = photo8(photos["hazy.jpg"])
    expected = dehaze(load_model(checkpoints["mixcl"]), hazy, label="outdoor")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url)
        page.locator("#photo input[type=file]").set_input_files(photos["hazy.jpg"])
        page.get_by_label("outdoor").check()
        page.click("#dehaze")
        expect(page.locator("#status")).to_contain_text(f"input {fade(hazy):.3f}", timeout=60_000)
        shown = [decoded(page.request.get(img.get_attribute("src")).body()) for img in page.locator("#comparison img").all()]
        with page.expect_download() as download:
            page.click("#download")
        downloaded = download.value.suggested_filename, decoded(Path(download.value.path()).read_bytes())
        page.screenshot(path=tmp_path / "app.png")  # the page with its result (kept with pytest's tmp folders)

        page.locator("#checkpoint input").click()  # the other checkpoint: no prior, so no class to choose
        page.get_by_role("option", name="plain").click()
        expect(page.locator("#label")).to_be_hidden()
        page.click("#dehaze")
        expect(page.locator("#status")).to_contain_text("plain, 64×48", timeout=60_000)
        plain = decoded(page.request.get(page.locator("#comparison img").nth(1).get_attribute("src")).body())

        page.locator("#photo input[type=file]").set_input_files(photos["damaged.jpg"])
        page.click("#dehaze")
        expect(page.locator("#status")).to_contain_text(REFUSALS["damaged.jpg"], timeout=60_000)
        browser.close()
    assert len(shown) == 2 and np.array_equal(shown[0], hazy) and np.array_equal(shown[1], expected)
    assert downloaded[0] == "hazy-mixcl.png" and np.array_equal(downloaded[1], expected)
    assert np.array_equal(plain, dehaze(load_model(checkpoints["plain"]), hazy))
    assert [r for r in requests if not r.startswith((url, "data:", "blob:"))] == []  # nothing leaves the machine


def test_server_answers_bad_inputs_and_keeps_serving(server, photos, checkpoints):
    from gradio_client import Client, handle_file  # noqa: PLC0415 — an extra: page_tools says when it is absent

    url, process = server
    client = Client(url, verbose=False)

    def status(name: str, checkpoint: str = "plain", label: str | None = None) -> str:
        return client.predict(handle_file(photos[name]), checkpoint, label, api_name="/dehaze")[3]

    for name, message in REFUSALS.items():
        assert status(name).startswith(f"**Not dehazed.** {message}")
    assert "1×1" in status("one.png") and "alpha channel" in status("rgba.png") and "8 bits" in status("deep.png")
    assert "needs the photo's class" in status("hazy.jpg", "mixcl")
    assert "FADE" in status("hazy.jpg", "mixcl", "outdoor") and process.poll() is None
