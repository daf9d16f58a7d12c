"""Bad inputs and faults, as a hostile user would make them: each is named (one line per problem, naming its file,
exit status 1, no traceback) before work starts, or handled correctly. Nothing a user owns is overwritten, and no
output is silently wrong."""
import argparse
import fcntl
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import engine.training
import evaluate_real
import predict
import test as test_script
import train
from inference import dehaze
from models import build_model, load_model
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.cli import UserError, run_reporting_user_errors
from utils.image import read_image
from utils.paths import LINK_LOOP, LOCK_FILE, OutputFolder

from .conftest import load_script, tiny_config, write_checkpoint
from .test_datasets import make_pairs
from .test_images import UPRIGHT, png_claiming, save_with_orientation

ROOT = Path(__file__).resolve().parents[1]


def user_error(main, argv: list[str]) -> str:
    """The message a script ends with when the user's input is bad (SystemExit with a string: exit status 1)."""
    with pytest.raises(SystemExit) as stop:
        run_reporting_user_errors(main, [str(a) for a in argv])
    assert isinstance(stop.value.code, str) and stop.value.code.startswith("error: "), stop.value.code
    return stop.value.code


def photos(folder: Path, names=("a.png", "b.jpg")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(UPRIGHT).save(folder / name)
    return folder


# --- inputs that must be named before any work: (what is given, the message expected) ------------------------------

def truncated_jpeg(path: Path) -> Path:
    Image.fromarray(UPRIGHT).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def zeroed_jpeg(path: Path) -> Path:
    Image.fromarray(UPRIGHT).save(path, quality=90)
    data = bytearray(path.read_bytes())
    data[len(data) // 3: len(data) // 3 + 200] = bytes(200)
    path.write_bytes(bytes(data))
    return path


def case_predict_truncated_photo(tmp):
    truncated_jpeg(photos(tmp / "in") / "c.jpg")
    return predict.main, [tmp / "in", "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        r"1 problem\(s\):\n  .*in/c.jpg: damaged or truncated JPEG \(Premature end of JPEG file\)"


def case_predict_file_opencv_cannot_read(tmp):
    (photos(tmp / "in") / "tga.png").write_bytes(b"\x00\x00\x02" + bytes(115))  # Targa data named .png
    return predict.main, [tmp / "in", "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        r"in/tga.png: cannot be decoded as an image"


def case_predict_header_claims_a_gigapixel(tmp):
    (photos(tmp / "in") / "huge.png").write_bytes(png_claiming(100_000, 100_000))
    return predict.main, [tmp / "in", "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        r"in/huge.png: its header claims 100000×100000 pixels"


def case_predict_out_is_the_photos_folder(tmp):
    return predict.main, [photos(tmp / "in"), "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "in"], \
        r"results would overwrite input files: .*in/a.png \(from .*in/a.png\)"


def case_evaluate_real_truncated_photo(tmp):
    truncated_jpeg(photos(tmp / "in", ("a.png",)) / "c.jpg")
    return evaluate_real.main, [tmp / "in", "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        r"in/c.jpg: damaged or truncated JPEG"


def case_synthesize_haze_from_a_truncated_clean_photo(tmp):
    truncated_jpeg(photos(tmp / "clean", ("a.png",)) / "c.jpg")
    synthesize = load_script("synthesize_haze")
    return (lambda argv: synthesize.main(synthesize.parse_args(argv))), ["--clean", tmp / "clean", "--out", tmp / "out"], \
        r"clean/c.jpg: damaged or truncated JPEG"


def training_data(tmp: Path, damage) -> Path:
    root = make_pairs(tmp / "data" / "train", count=4, size=(48, 48))
    damage(root)
    return tmp / "data"


def train_argv(tmp: Path, data: Path | None = None, *overrides: str) -> list:
    (tmp / "config.yaml").write_text(json.dumps(tiny_config(tmp / "run").to_dict()))  # JSON is YAML
    data_overrides = ["data.dataset=paired", f"data.root={data}"] if data else []
    return [tmp / "config.yaml", *data_overrides, *overrides]


def case_train_zeroed_jpeg(tmp):
    data = training_data(tmp, lambda root: (zeroed_jpeg(root / "GT" / "09.jpg"), zeroed_jpeg(root / "hazy" / "09.jpg")))
    return train.main, train_argv(tmp, data), r"train/GT/09.jpg: damaged or truncated JPEG \(Corrupt JPEG data"


def case_train_exif_rotates_one_side_of_a_pair(tmp):
    def rotate(root):  # upright pixels, but a tag that says "turn 90°": the viewer (and the loader) turn it
        save_with_orientation(root / "hazy" / "00.png", np.asarray(Image.open(root / "hazy" / "00.png").resize((56, 48))), 6)
        Image.open(root / "GT" / "00.png").resize((56, 48)).save(root / "GT" / "00.png")
    return train.main, train_argv(tmp, training_data(tmp, rotate)), \
        r"train/hazy/00.png: size 48×56 differs from .*train/GT/00.png \(56×48\) once EXIF orientation is applied " \
        r"\(.*train/hazy/00.png's EXIF orientation turns it by 90°\)"


def case_train_broken_link_pair(tmp):
    def links(root):
        for folder in ("GT", "hazy"):
            (root / folder / "09.png").symlink_to(root / "gone.png")
    return train.main, train_argv(tmp, training_data(tmp, links)), r"train/GT/09.png: a broken link \(it points to nothing\)"


def case_train_infinite_learning_rate(tmp):
    return train.main, train_argv(tmp, None, "train.lr=.inf"), r"train.lr: expected a finite number, got inf"


def case_train_batch_not_a_multiple_of_the_micro_batch(tmp):
    return train.main, train_argv(tmp, None, "train.micro_batch_size=3"), \
        r"train.batch_size 4 is not a multiple of train.micro_batch_size 3"


def case_train_unknown_model_args(tmp):
    return train.main, train_argv(tmp, None, "model_args={width: 3}"), \
        r"model_args width: not arguments of MixDehazeNet \(depths, widths, in_chans\)"


def case_train_model_args_of_the_wrong_kind(tmp):
    return train.main, train_argv(tmp, None, "model_args={widths: 3}"), \
        r"model_args \{'widths': 3\}: MixDehazeNet cannot be built with them \('int' object is not subscriptable\)"


def case_train_yaml_syntax_error(tmp):
    (tmp / "bad.yaml").write_text("model: mixdehazenet-t\ntrain: {epochs: 3\n")
    return train.main, [tmp / "bad.yaml"], r"bad.yaml: not valid YAML \(while parsing a flow mapping"


def case_train_out_dir_not_writable(tmp):
    return train.main, train_argv(tmp, None, "out_dir=/sys/mixcl-run"), \
        r"out_dir /sys/mixcl-run cannot be created or written \(Operation not permitted\)"


def case_predict_out_cannot_be_created(tmp):
    return predict.main, [photos(tmp / "in"), "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", "/sys/mixcl-out"], \
        r"output folder /sys/mixcl-out cannot be created or written"


def case_train_config_is_a_folder(tmp):
    (tmp / "configs").mkdir()
    return train.main, [tmp / "configs"], r"config file .*configs: a folder, not a file"


def case_predict_a_folder_named_like_a_photo(tmp):
    (photos(tmp / "in") / "album.png").mkdir()
    return predict.main, [tmp / "in", "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        r"1 problem\(s\):\n  .*in/album.png: a folder, not a file"


def case_train_a_folder_named_like_a_photo_in_hazy(tmp):
    data = training_data(tmp, lambda root: (root / "hazy" / "0070.jpg").mkdir())
    return train.main, train_argv(tmp, data), r"train/hazy/0070.jpg: a folder, not a file"


def case_test_a_folder_named_like_a_photo(tmp):
    data = make_pairs(tmp / "test", count=2)
    (data / "hazy" / "01.png").unlink()
    (data / "hazy" / "01.png").mkdir()
    return test_script.main, ["--checkpoint", write_checkpoint(tmp / "net.pt"), "--data", data, "--out", tmp / "out"], \
        r"test/hazy/01.png: a folder, not a file"


def link_loop(path: Path) -> Path:
    """A symbolic link to itself (following it fails with ELOOP)."""
    path.symlink_to(path.name)
    return path


LOOP = re.escape(LINK_LOOP)


def case_predict_a_link_loop_among_the_photos(tmp):
    link_loop(photos(tmp / "in") / "c.jpg")
    return predict.main, [tmp / "in", "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        rf"1 problem\(s\):\n  .*in/c.jpg: {LOOP}"


def case_evaluate_real_a_link_loop_given_as_a_photo(tmp):
    photos(tmp / "in", ("a.png",))
    return evaluate_real.main, [tmp / "in" / "a.png", link_loop(tmp / "in" / "b.jpg"), "--checkpoint",
                                write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], rf"in/b.jpg: {LOOP}"


def case_predict_the_photo_folder_is_a_link_loop(tmp):
    return predict.main, [link_loop(tmp / "photos"), "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out", tmp / "out"], \
        rf"photos: {LOOP}"


def case_test_data_is_a_link_loop(tmp):
    return test_script.main, ["--checkpoint", write_checkpoint(tmp / "net.pt"), "--data", link_loop(tmp / "data"), "--out",
                              tmp / "out"], rf"data/GT: {LOOP}; a paired dataset needs"


def case_test_a_link_loop_in_hazy(tmp):
    data = make_pairs(tmp / "test", count=2)
    (data / "hazy" / "01.png").unlink()
    link_loop(data / "hazy" / "01.png")
    return test_script.main, ["--checkpoint", write_checkpoint(tmp / "net.pt"), "--data", data, "--out", tmp / "out"], \
        rf"test/hazy/01.png: {LOOP}"


def case_train_config_is_a_link_loop(tmp):
    return train.main, [link_loop(tmp / "config.yaml")], rf"config file .*config.yaml: {LOOP}"


def case_predict_checkpoint_is_a_link_loop(tmp):
    return predict.main, [photos(tmp / "in"), "--checkpoint", link_loop(tmp / "net.pt"), "--out", tmp / "out"], \
        rf"checkpoint .*net.pt: {LOOP}"


def case_predict_out_is_a_link_loop(tmp):
    return predict.main, [photos(tmp / "in"), "--checkpoint", write_checkpoint(tmp / "net.pt"), "--out",
                          link_loop(tmp / "out")], rf"output folder .*out: .*out is {LOOP}; choose another one"


def case_synthesize_haze_a_link_loop_among_the_clean_photos(tmp):
    link_loop(photos(tmp / "clean", ("a.png",)) / "b.png")
    synthesize = load_script("synthesize_haze")
    return (lambda argv: synthesize.main(synthesize.parse_args(argv))), ["--clean", tmp / "clean", "--out", tmp / "out"], \
        rf"clean/b.png: {LOOP}"


def case_export_pretrained_results_are_a_link_loop(tmp):
    export = load_script("export_pretrained")
    return export.main, ["--checkpoint", write_checkpoint(tmp / "net.pt"), tmp / "exported", "--results",
                         link_loop(tmp / "summary.json")], rf"test results .*summary.json: {LOOP}"


def case_train_holdout_leaves_no_training_pair(tmp):
    data = tmp / "data"
    make_pairs(data / "train", count=1, size=(48, 48))
    return train.main, train_argv(tmp, data, "data.validation=holdout"), \
        r"train.batch_size 4 needs at least that many training samples: data.holdout_fraction 0.02 holds 1 of the 1 " \
        r"pairs in .*/train out for validation, leaving 0"


def case_test_checkpoint_naming_no_model(tmp):
    path = tmp / "net.pt"
    save_checkpoint(path, {"model_name": None, "model_args": {}, "model": build_model("mixdehazenet-t").state_dict()})
    return test_script.main, ["--checkpoint", path, "--data", make_pairs(tmp / "test", count=1), "--out", tmp / "out"], \
        r"net.pt names no model this project knows \(model_name None"


def checkpoint_case(make):
    def case(tmp):
        checkpoint, model = make(tmp)
        test_data = make_pairs(tmp / "test", count=1, size=(40, 44))
        argv = ["--checkpoint", checkpoint, "--data", test_data, "--out", tmp / "out"] + (["--model", model] if model else [])
        return test_script.main, argv, re.escape(str(checkpoint))
    return case


def truncated_checkpoint(tmp):
    path = write_checkpoint(tmp / "net.pt")
    path.write_bytes(path.read_bytes()[:5000])
    return path, None


def file_of(path: Path, data: bytes) -> tuple[Path, None]:
    path.write_bytes(data)
    return path, None


def nan_checkpoint(tmp):
    net = build_model("mixdehazenet-t")
    with torch.no_grad():
        net.stem.weight[0, 0, 0, 0] = float("nan")
    return write_checkpoint(tmp / "net.pt", net=net), None


CHECKPOINTS = {
    "truncated": (truncated_checkpoint, r"is damaged or truncated, or not a PyTorch file"),
    "zero bytes": (lambda tmp: file_of(tmp / "e.pt", b""), r"is empty \(0 bytes\)"),
    "random bytes": (lambda tmp: file_of(tmp / "r.pt", random.Random(2).randbytes(3000)),
                     r"is damaged or truncated, or not a PyTorch file"),
    "another model than --model": (lambda tmp: (write_checkpoint(tmp / "net.pt"), "mixcl-t"),
                                   r"holds a 'mixdehazenet-t' model, not 'mixcl-t'"),
    "official without --model": (lambda tmp: (ROOT.parent / "shared" / "vectors" / "mixdehazenet_t_official.pt", None),
                                 r"is not a checkpoint of this project: pass the model it holds with --model"),
    "official, wrong --model": (lambda tmp: (ROOT.parent / "shared" / "vectors" / "mixdehazenet_t_official.pt", "ka-net-tiny"),
                                r"does not hold 'ka-net-tiny' weights"),
    "non-finite weights": (nan_checkpoint, r"holds non-finite weights \(NaN or inf\)"),
}

CASES = {name.removeprefix("case_"): case for name, case in dict(globals()).items() if name.startswith("case_")}
CASES |= {f"checkpoint {name}": checkpoint_case(make) for name, (make, _) in CHECKPOINTS.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_named_before_any_work(case, tmp_path, vectors_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders land here, never in the repository
    main, argv, expected = CASES[case](tmp_path)
    if case.startswith("checkpoint "):
        expected += ".*" + CHECKPOINTS[case.removeprefix("checkpoint ")][1]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()}
    folders_before = {p for p in tmp_path.rglob("*") if p.is_dir()}
    message = user_error(main, argv)
    assert re.search(expected, message), message
    assert "Traceback" not in message and "weights_only" not in message and "file an issue" not in message
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing the user owns was changed
    written = [p for p in tmp_path.rglob("*") if p not in before and p.is_file()]
    assert not [p for p in written if p.suffix in (".png", ".jpg", ".pt", ".csv")], written  # no work was done
    left = [p for p in tmp_path.rglob("*") if p.is_dir() and p not in folders_before]
    assert not left, left  # no empty output folder is left behind


# --- inputs that are fine and must come out right --------------------------------------------------------------

def test_a_sixteen_bit_grayscale_photo_is_dehazed_as_it_looks(tmp_path):
    gray = (cv2.cvtColor(UPRIGHT, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)  # 16-bit, full range
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    (written,) = predict.main([str(tmp_path / "g16.png"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")])
    photo = read_image(tmp_path / "g16.png")
    assert 0.3 < photo.mean() < 0.7  # read as the gray photo it is (an 8-bit conversion made it all white)
    expected = dehaze(load_model(checkpoint), photo)
    assert np.abs(read_image(written) - expected).max() <= 0.5 / 255 + 1e-6


def test_inputs_sharing_a_name_get_results_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "test"
    photo = np.asarray(Image.fromarray(UPRIGHT).resize((224, 160)))  # NIQE needs 192×96
    for folder in ("GT", "hazy"):
        (data / folder).mkdir(parents=True)
        for i, name in enumerate(("x.jpg", "x.png")):
            Image.fromarray(np.roll(photo, 7 * i, axis=1)).save(data / folder / name, **({"quality": 95} if i == 0 else {}))
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    test_script.main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "t")])
    assert sorted(p.name for p in (tmp_path / "t" / "images").iterdir()) == ["x.jpg.png", "x.png.png"]
    evaluate_real.main([str(data / "hazy"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "r")])
    assert sorted(p.name for p in (tmp_path / "r" / "outputs").iterdir()) == ["x.jpg.png", "x.png.png"]
    (one, other) = (read_image(tmp_path / "r" / "outputs" / n) for n in ("x.jpg.png", "x.png.png"))
    assert np.abs(one - other).mean() > 0.01  # two different photos, two different results


# --- faults while training ----------------------------------------------------------------------------------------

def test_a_diverging_run_never_saves_a_non_finite_weight_and_resumes_with_a_lower_rate(tmp_path):
    train.train(tiny_config(tmp_path / "run", train={"epochs": 1}))
    with pytest.raises(engine.training.TrainingDiverged, match="weights or BatchNorm statistics became non-finite"):
        train.train(tiny_config(tmp_path / "run", train={"epochs": 2, "lr": 1e9, "max_skipped_steps": 5}), resume=True)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    floats = [t for t in checkpoint["model"].values() if t.is_floating_point()]
    assert checkpoint["epoch"] == 1 and all(torch.isfinite(t).all() for t in floats)
    history = train.train(tiny_config(tmp_path / "run", train={"epochs": 2, "lr": 5e-4}), resume=True)  # as the message says
    resumed = load_checkpoint(tmp_path / "run" / "last.pt")
    assert [h["epoch"] for h in history] == [1, 2] and resumed["config"]["train"]["lr"] == 5e-4
    # the cosine schedule re-planned from epoch 1 of 2 at the new rate: lr·(min + (1 − min)·(1 + cos(π/2))/2)
    assert resumed["scheduler"]["_last_lr"][0] == pytest.approx(5e-4 * 0.01)  # after the last epoch: the floor


def test_history_never_lists_an_epoch_no_checkpoint_holds(tmp_path, monkeypatch):
    save = engine.training.save_checkpoint

    def disk_full_on_epoch_2(path, payload):
        if payload["epoch"] == 2:
            raise OSError(28, "No space left on device", str(path))
        save(path, payload)
    monkeypatch.setattr(engine.training, "save_checkpoint", disk_full_on_epoch_2)
    with pytest.raises(OSError, match="No space left"):
        train.train(tiny_config(tmp_path / "run", train={"epochs": 3}))
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1] == [load_checkpoint(tmp_path / "run" / "last.pt")["epoch"]]


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # files above 200 kB fail like a full disk
sys.argv = ["train.py", *sys.argv[1:]]
import runpy
runpy.run_path("train.py", run_name="__main__")
"""


def test_a_full_disk_ends_the_run_with_one_line(tmp_path):
    argv = train_argv(tmp_path)
    result = subprocess.run([sys.executable, "-c", FULL_DISK, *map(str, argv)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last_line = result.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert re.fullmatch(r"error: .*run/(best|last).pt: could not be written \(the disk is full, or a file size limit was hit\)",
                        last_line), last_line
    assert not (tmp_path / "run" / "last.pt").exists() and not list((tmp_path / "run").glob(".*.tmp"))


KILLED_WRITE = """
import sys, time, torch
from utils.checkpoint import save_checkpoint
path = sys.argv[1]
save_checkpoint(path, {"epoch": 1, "weights": torch.ones(10)})
def stalls(obj, f):  # a write the kill interrupts: half the bytes, then nothing
    f.write(b"PK" + bytes(50_000)); f.flush(); print("writing", flush=True); time.sleep(60)
torch.save = stalls
save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(10)})
"""


def test_kill_9_during_a_checkpoint_write_leaves_the_last_one_whole(tmp_path):
    path = tmp_path / "last.pt"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    (leftover,) = tmp_path.glob(".last.pt.*.tmp")  # the killed write's temporary file, never renamed
    assert leftover.stat().st_size == 50_002
    assert load_checkpoint(path)["epoch"] == 1  # the real file is the previous, whole checkpoint
    save_checkpoint(path, {"epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3 and not list(tmp_path.glob(".*.tmp"))  # the next write removed it


def test_any_garbage_checkpoint_is_named_damaged_without_a_warning(tmp_path, recwarn):
    path = tmp_path / "garbage.pt"
    for seed in range(200):  # the weights-only unpickler fails on these with UnpicklingError, IndexError, KeyError, ...
        path.write_bytes(random.Random(seed).randbytes(300))
        with pytest.raises(CheckpointError, match=r"is damaged or truncated, or not a PyTorch file"):
            load_checkpoint(path)
    assert not [str(w.message) for w in recwarn]  # e.g. no "Detected pickle protocol 201" reaches the user
    path.write_text("config: a\nmodel: mixcl-t\n")  # the unpickler reads "c" as a global: still not a checkpoint
    with pytest.raises(CheckpointError, match=r"is damaged or truncated, or not a PyTorch file"):
        load_checkpoint(path)


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_checkpoint_holding_python_objects_is_named_so(tmp_path, zip_format):
    path = tmp_path / "official.pth"  # as some releases save: the training arguments beside the weights
    torch.save({"args": argparse.Namespace(lr=1e-4), "state_dict": {"w": torch.ones(2)}}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"holds Python objects besides tensors.*weights_only=False"):
        load_checkpoint(path)


def test_checkpoints_get_the_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "a.pt", {"epoch": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644  # as open() would create it (mkstemp gave 0600)


def test_user_errors_are_one_line_without_a_traceback_from_the_command_line(tmp_path):
    checkpoint = tmp_path / "net.pt"
    checkpoint.write_bytes(random.Random(20).randbytes(3000))  # the unpickler fails with a KeyError on these
    result = subprocess.run([sys.executable, "predict.py", str(photos(tmp_path / "in")), "--checkpoint", str(checkpoint)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr == (
        f"error: checkpoint {checkpoint} is damaged or truncated, or not a PyTorch file\n")


# --- the true reason for every refusal, from the command line ----------------------------------------------------

def without_root_privileges() -> list[str]:
    """A command prefix under which file permissions apply to this process (root bypasses them): none for an
    ordinary user; for root, setpriv dropping the capabilities that override permissions."""
    if os.geteuid() != 0:
        return []
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        pytest.skip("running as root without util-linux's setpriv: file permissions cannot be made to apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def one_line_error(command: list, cwd=ROOT) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    return result.stderr


def test_a_file_the_user_may_not_read_is_named_so_by_every_script(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    folder = photos(tmp_path / "in")
    (folder / "b.jpg").chmod(0)
    data = make_pairs(tmp_path / "test", count=2)
    (data / "hazy" / "01.png").chmod(0)
    (tmp_path / "config.yaml").write_text(json.dumps(tiny_config(tmp_path / "run", data={
        "dataset": "paired", "root": str(tmp_path), "train_split": "test"}).to_dict()))
    prefix = [*without_root_privileges(), sys.executable]
    runs = {"predict.py": [folder, "--checkpoint", checkpoint, "--out", tmp_path / "p"],
            "evaluate_real.py": [folder, "--checkpoint", checkpoint, "--out", tmp_path / "r"],
            "test.py": ["--checkpoint", checkpoint, "--data", data, "--out", tmp_path / "t"],
            "train.py": [tmp_path / "config.yaml"]}
    for script, argv in runs.items():
        message = one_line_error([*prefix, script, *argv])
        assert re.search(r"(in/b.jpg|hazy/01.png): permission denied: this user may not read it", message), (script, message)
    (tmp_path / "secret.pt").write_bytes(checkpoint.read_bytes())
    (tmp_path / "secret.pt").chmod(0)
    message = one_line_error([*prefix, "predict.py", photos(tmp_path / "readable"), "--checkpoint", tmp_path / "secret.pt"])
    assert "checkpoint" in message and "secret.pt: permission denied" in message


def test_decoder_noise_never_comes_before_the_error(tmp_path):
    folder = photos(tmp_path / "in")
    truncated_jpeg(folder / "c.jpg")
    (folder / "tga.png").write_bytes(b"\x00\x00\x02" + bytes(115))
    message = one_line_error([sys.executable, "predict.py", folder, "--checkpoint", write_checkpoint(tmp_path / "net.pt"),
                              "--out", tmp_path / "out"])
    assert message.splitlines() == [
        "error: 2 problem(s):", f"  {folder / 'c.jpg'}: damaged or truncated JPEG (Premature end of JPEG file)",
        f"  {folder / 'tga.png'}: cannot be decoded as an image (damaged, or not an image format OpenCV reads)"]


def test_outputs_are_checked_writable_before_the_first_photo(tmp_path, monkeypatch):
    monkeypatch.chdir("/sys")  # no --out: results/ would go in the working folder, which cannot be written
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    dehazed = []
    monkeypatch.setattr("inference.Dehazer.__call__", lambda self, *a, **k: dehazed.append(1))
    for main in (predict.main, evaluate_real.main):
        message = user_error(main, [photos(tmp_path / "in"), "--checkpoint", checkpoint])
        assert "output folder results/net/" in message and "cannot be created or written" in message
    message = user_error(test_script.main, ["--checkpoint", checkpoint, "--data", make_pairs(tmp_path / "t", count=1)])
    assert "output folder results/net/test cannot be created or written" in message
    assert not dehazed


def test_photos_sharing_a_name_in_different_folders_get_distinct_results(tmp_path):
    photos(tmp_path / "a", ("x.jpg",))
    (tmp_path / "b").mkdir()
    Image.fromarray(UPRIGHT[::-1].copy()).save(tmp_path / "b" / "x.jpg")
    written = predict.main([str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"), "--checkpoint",
                            str(write_checkpoint(tmp_path / "net.pt")), "--out", str(tmp_path / "out")])
    assert [p.name for p in written] == ["a-x.jpg.png", "b-x.jpg.png"]
    assert np.abs(read_image(written[0]) - read_image(written[1])).mean() > 0.01  # each its own photo's result


def test_a_state_dict_saved_from_data_parallel_loads(tmp_path):
    net = build_model("mixdehazenet-t").eval()
    torch.save(torch.nn.DataParallel(net).state_dict(), tmp_path / "dp.pth")  # keys "module.stem.weight", ...
    loaded = load_model(tmp_path / "dp.pth", "mixdehazenet-t")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())


# --- one run per output folder --------------------------------------------------------------------------------------

def start_training(tmp_path: Path, name: str, seed: int, epochs: int) -> tuple[subprocess.Popen, Path]:
    """train.py in a child process on tiny synthetic data; returns it once it holds its out_dir's lock."""
    out_dir = tmp_path / "run"
    config = tiny_config(out_dir, train={"epochs": epochs, "seed": seed})
    (tmp_path / f"{name}.yaml").write_text(json.dumps(config.to_dict()))
    child = subprocess.Popen([sys.executable, "train.py", str(tmp_path / f"{name}.yaml")], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if (out_dir / LOCK_FILE).is_file() and f"process {child.pid} " in (out_dir / LOCK_FILE).read_text():
            return child, tmp_path / f"{name}.yaml"
        if child.poll() is not None:
            raise AssertionError(child.stderr.read())
        time.sleep(0.05)
    raise AssertionError("the training run never took its out_dir")


def test_a_second_run_into_the_same_out_dir_stops_at_once(tmp_path):
    first, _ = start_training(tmp_path, "first", seed=1, epochs=12)
    (tmp_path / "second.yaml").write_text(json.dumps(tiny_config(tmp_path / "run", train={"seed": 2}).to_dict()))
    message = user_error(train.main, [tmp_path / "second.yaml"])  # in this process: no start-up delay
    assert message == f"error: out_dir {tmp_path / 'run'} is in use by process {first.pid} on {socket.gethostname()}: " \
                      f"wait for it to finish, or choose another one"
    assert first.wait(timeout=300) == 0, first.stderr.read()
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["epoch"] == 12 and checkpoint["config"]["train"]["seed"] == 1  # the first run's, whole


def test_a_killed_run_leaves_its_out_dir_to_the_next(tmp_path):
    first, config = start_training(tmp_path, "first", seed=1, epochs=1000)
    first.send_signal(signal.SIGKILL)
    first.wait()
    last = tmp_path / "run" / "last.pt"
    epochs = load_checkpoint(last)["epoch"] + 1 if last.exists() else 1
    train.main([str(config), f"train.epochs={epochs}", *(["--resume"] if last.exists() else [])])  # takes the lock
    assert load_checkpoint(last)["epoch"] == epochs


def entered(folder: OutputFolder) -> Path | Exception:
    try:
        return folder.__enter__()
    except UserError as e:
        return e


@pytest.mark.parametrize("first_fails", [False, True], ids=["first run finishes", "first run fails"])
def test_no_two_runs_ever_hold_one_folder(tmp_path, monkeypatch, first_fails):
    """Run A holds the folder; B opens the lock file and loses the processor before locking it; A leaves (a failed A
    removes the folder it created, lock file and all); C comes and locks; B goes on. Had A removed the lock file on
    leaving, B would lock the removed file and C a new one: both would write into the folder."""
    folder, opened, go_on, result = tmp_path / "out", threading.Event(), threading.Event(), {}
    flock = fcntl.flock

    def paused_in_b(handle, operation):  # B's first lock, after it opened the file
        if threading.current_thread().name == "B" and not opened.is_set():
            opened.set()
            assert go_on.wait(30)
        return flock(handle, operation)
    monkeypatch.setattr(fcntl, "flock", paused_in_b)
    first = OutputFolder(folder)
    first.__enter__()
    thread = threading.Thread(target=lambda: result.update(second=entered(OutputFolder(folder))), name="B")
    thread.start()
    assert opened.wait(30)
    first.__exit__(*((RuntimeError, RuntimeError(), None) if first_fails else (None, None, None)))
    assert folder.exists() != first_fails  # a failed run took away the folder it created
    third = OutputFolder(folder)
    assert third.__enter__() == folder
    go_on.set()
    thread.join(30)
    assert isinstance(result["second"], UserError), result
    assert str(result["second"]) == (f"output folder {folder} is in use by process {os.getpid()} on "
                                     f"{socket.gethostname()}: wait for it to finish, or choose another one")
    third.__exit__(None, None, None)


def test_a_leftover_lock_file_neither_stops_a_run_nor_names_a_holder(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / LOCK_FILE).write_text("process 4242 on a machine long gone\n")  # a run killed by kill -9
    with OutputFolder(folder):
        assert (folder / LOCK_FILE).read_text() == f"process {os.getpid()} on {socket.gethostname()}\n"
    assert (folder / LOCK_FILE).read_text() == ""  # kept for the folder's life, naming no holder
    with OutputFolder(folder):
        pass
    with pytest.raises(RuntimeError), OutputFolder(tmp_path / "new" / "deeper"):
        raise RuntimeError("a run that fails before writing anything")
    assert not (tmp_path / "new").exists() and (folder / LOCK_FILE).exists()  # what it created, lock file and all


# --- Ctrl-C ------------------------------------------------------------------------------------------------------------

def interrupted_training(command: list[str], run: Path, after_epoch: int) -> str:
    """Start `command` (a train.py run), press Ctrl-C once its history lists an epoch after `after_epoch`, and return
    the last line it printed."""
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=os.environ | {"OMP_NUM_THREADS": "1"})  # one thread: quick on a busy machine too
    try:
        for _ in range(2400):
            history = run / "history.jsonl"
            if child.poll() is not None or (history.is_file() and len(history.read_text().splitlines()) > after_epoch):
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        stderr = child.communicate(timeout=60)[1]
    finally:
        child.kill()
    assert child.returncode == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    return stderr.rstrip("\n").rsplit("\n", 1)[-1].split("\r")[-1].strip()


def test_ctrl_c_in_train_py_prints_the_command_that_continues_this_very_run(tmp_path):
    (tmp_path / "config.yaml").write_text(json.dumps(tiny_config(tmp_path / "elsewhere").to_dict()))
    run = tmp_path / "my run"  # a space: the command must quote it
    overrides = [f"out_dir={run}", "train.epochs=1000", "train.lr=5e-4"]
    line = interrupted_training([sys.executable, "train.py", str(tmp_path / "config.yaml"), *overrides], run, 0)
    first = load_checkpoint(run / "last.pt")
    epoch = first["epoch"]
    command = shlex.join(["python", "train.py", str(tmp_path / "config.yaml"), *overrides, "--resume"])
    assert line == f"interrupted: {run / 'last.pt'} holds epoch {epoch}; continue with: {command}"
    pasted = [sys.executable, *shlex.split(line.split("continue with: ")[1])[1:]]  # as a shell reads it
    again = interrupted_training(pasted, run, epoch)
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["epoch"] > epoch and resumed["history"][:epoch] == first["history"]  # this very run, continued
    assert resumed["config"]["train"]["lr"] == 5e-4 and resumed["config"]["train"]["epochs"] == 1000
    assert again.endswith(f"continue with: {command}") and not (tmp_path / "elsewhere").exists()


def test_ctrl_c_in_test_py_says_in_one_line_what_was_kept(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield
    monkeypatch.setattr("engine.evaluate", interrupted)
    checkpoint = write_checkpoint(tmp_path / "net.pt")
    with pytest.raises(SystemExit) as stop:
        test_script.main(["--checkpoint", str(checkpoint), "--data", str(make_pairs(tmp_path / "t", count=1)),
                          "--out", str(tmp_path / "out")])
    assert stop.value.code == 130
    last_line = capsys.readouterr().err.rstrip("\n").rsplit("\n", 1)[-1]  # after the progress bar
    assert last_line == (f"interrupted: no scores were written; {tmp_path / 'out' / 'images'} holds the images dehazed so "
                         f"far (test.py starts over when run again)")
