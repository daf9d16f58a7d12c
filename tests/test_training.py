"""train.py and test.py end to end on tiny data (CPU, seconds)."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import engine.training
import test as test_script
import train
from datasets import DatasetError, build_training_sets
from models import load_model
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.config import ConfigError
from utils.image import read_image

from .conftest import tiny_config
from .test_datasets import make_pairs


def logged_losses(out_dir):
    events = EventAccumulator(str(out_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def train_killed_after_epoch(config, epoch, monkeypatch) -> None:
    """Train `config` and kill the run (KeyboardInterrupt) right after its last.pt of `epoch` is written."""
    save = engine.training.save_checkpoint

    def killed(path, payload):
        save(path, payload)
        if path.name == "last.pt" and payload["epoch"] == epoch:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(engine.training, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        train.train(config)
    monkeypatch.undo()


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, monkeypatch):
    full = train.train(tiny_config(tmp_path / "full", train={"epochs": 3}))
    train_killed_after_epoch(tiny_config(tmp_path / "resumed", train={"epochs": 3}), 2, monkeypatch)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2
    resumed = train.train(tiny_config(tmp_path / "resumed", train={"epochs": 3}), resume=True)

    assert [h["psnr"] for h in resumed] == [h["psnr"] for h in full]
    assert len(full) == 3
    full_losses, resumed_losses = logged_losses(tmp_path / "full"), logged_losses(tmp_path / "resumed")
    assert [s for s, _ in full_losses] == list(range(6))  # 2 steps per epoch, 3 epochs
    assert resumed_losses == full_losses
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (tmp_path / "full" / "best.pt").is_file()
    history = [json.loads(line) for line in (tmp_path / "resumed" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_checkpoint_carries_everything_needed(tmp_path):
    config = tiny_config(tmp_path)
    train.train(config)
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["model_name"] == "mixdehazenet-t" and checkpoint["epoch"] == 1
    assert checkpoint["config"] == config.to_dict()
    assert {"optimizer", "scheduler", "scaler", "rng", "metrics"} <= set(checkpoint)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
    with pytest.raises(FileExistsError, match="pass --resume"):
        train.train(config)
    config.train.batch_size = 2
    with pytest.raises(ConfigError, match="the config differs in train.batch_size"):
        train.train(config, resume=True)


def test_bad_data_stops_the_run_before_training(tmp_path):
    root = make_pairs(tmp_path / "data" / "train", size=(48, 48))
    (root / "hazy" / "02.png").write_bytes(b"broken")
    config = tiny_config(tmp_path / "run", data={"dataset": "paired", "root": str(tmp_path / "data")}, train={"epochs": 3})
    with pytest.raises(DatasetError, match="hazy/02.png: cannot be decoded as an image"):
        train.train(config)
    assert not any((tmp_path / "run").iterdir())  # nothing written: no checkpoint, no logs


def test_validation_split_choices(tmp_path):
    make_pairs(tmp_path / "train", count=10, size=(48, 48))
    make_pairs(tmp_path / "test", count=3, size=(48, 48))
    holdout = tiny_config(tmp_path, data={"dataset": "paired", "root": str(tmp_path), "holdout_fraction": 0.2}).data
    train_set, val_set = build_training_sets(holdout)
    assert (len(train_set), len(val_set)) == (8, 2) and val_set.root == tmp_path / "train"
    anchors = tiny_config(tmp_path, data={"dataset": "paired", "root": str(tmp_path), "validation": "test-center-crop"}).data
    train_set, val_set = build_training_sets(anchors)
    assert (len(train_set), len(val_set)) == (10, 3) and val_set.root == tmp_path / "test"


def test_test_script_writes_csv_summary_and_images(tmp_path):
    config = tiny_config(tmp_path / "run")
    train.train(config)
    data = make_pairs(tmp_path / "test", count=2, size=(45, 61))
    out = tmp_path / "results"
    args = test_script.parse_args(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(data), "--out", str(out)])
    summary = test_script.run(args)

    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["00.png", "01.png"]
    model = load_model(tmp_path / "run" / "best.pt")
    hazy = torch.from_numpy(read_image(data / "hazy" / "01.png")).permute(2, 0, 1)[None] * 2 - 1
    gt = torch.from_numpy(read_image(data / "GT" / "01.png")).permute(2, 0, 1)[None]
    with torch.no_grad():
        output = model(hazy).clamp(-1, 1) * 0.5 + 0.5
    expected_psnr = 10 * torch.log10(1 / (output - gt).square().mean()).item()
    assert abs(float(rows[1]["psnr"]) - expected_psnr) < 1e-4
    written = read_image(out / "images" / "01.png")
    assert written.shape == (45, 61, 3) and np.abs(written - output[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    assert summary["images"] == 2 and abs(summary["psnr"] - np.mean([float(r["psnr"]) for r in rows])) < 1e-9
    assert json.loads((out / "summary.json").read_text())["hazy_psnr"] == summary["hazy_psnr"]


def test_test_script_reads_official_checkpoints(tmp_path, vectors_dir):
    data = make_pairs(tmp_path / "test", count=1, size=(40, 44))
    args = test_script.parse_args(["--checkpoint", str(vectors_dir / "mixdehazenet_t_official.pt"), "--model", "mixdehazenet-t",
                                   "--data", str(data), "--out", str(tmp_path / "out"), "--no-images"])
    assert test_script.run(args)["model"] == "mixdehazenet-t"
    args.model = None
    with pytest.raises(CheckpointError, match="pass the model it holds with --model"):
        test_script.run(args)


def test_test_script_reports_each_domain_of_a_labelled_split(tmp_path, vectors_dir, capsys):
    data = make_pairs(tmp_path / "test", count=5, size=(40, 44))
    labels = {"00.png": "indoor", "01.png": "outdoor", "02.png": "indoor", "03.png": "outdoor", "04.png": "outdoor"}
    (data / "domain_labels.csv").write_text("".join(f"{n},{d}\n" for n, d in labels.items()))
    out = tmp_path / "out"
    summary = test_script.run(test_script.parse_args([
        "--checkpoint", str(vectors_dir / "mixdehazenet_t_official.pt"), "--model", "mixdehazenet-t",
        "--data", str(data), "--out", str(out), "--no-images"]))
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["name"]: r["domain"] for r in rows} == labels
    assert summary["domain_source"] == str(data / "domain_labels.csv")
    for domain, count in (("indoor", 2), ("outdoor", 3)):
        scores = [float(r["psnr"]) for r in rows if r["domain"] == domain]
        assert summary["by_domain"][domain]["images"] == count
        assert summary["by_domain"][domain]["psnr"] == pytest.approx(np.mean(scores), abs=1e-9)
    assert summary["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-9)
    assert json.loads((out / "summary.json").read_text())["by_domain"] == summary["by_domain"]
    printed = capsys.readouterr().out
    assert f"by domain, from {data / 'domain_labels.csv'}:" in printed
    assert f"outdoor        3 images  PSNR {summary['by_domain']['outdoor']['psnr']:.2f} dB" in printed

    (data / "domain_labels.csv").write_text("00.png,indoor\n")  # incomplete: refused before any image is dehazed
    with pytest.raises(DatasetError, match="no domain for 4 image"):
        test_script.run(test_script.parse_args(["--checkpoint", str(vectors_dir / "mixdehazenet_t_official.pt"),
                                                "--model", "mixdehazenet-t", "--data", str(data), "--out", str(out)]))


def test_scripts_report_user_errors_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: mixdehazenet-t\ndata:\n  crop: 64\n")
    for command in ([sys.executable, "train.py", str(bad)],
                    [sys.executable, "test.py", "--checkpoint", str(tmp_path / "none.pt"), "--data", "synthetic"]):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "unknown config key(s) data.crop" in subprocess.run([sys.executable, "train.py", str(bad)],
                                                               capture_output=True, text=True).stderr
