"""train.py and test.py end to end on tiny data (CPU, seconds): resuming, checkpoints, DDP with gradient
accumulation, mixed precision, non-finite steps, EMA, channels-last."""
import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.optim.swa_utils import AveragedModel

import engine.training
import test as test_script
import train
from datasets import DatasetError, build_training_sets
from engine import Process, TrainingDiverged
from losses import build_loss
from models import build_model, load_model
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.config import ConfigError
from utils.image import read_image

from .conftest import REPO as ROOT
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


def test_validation_within_an_epoch_and_resuming_from_there(tmp_path, monkeypatch):
    """train.eval_every_steps: validated and saved every 2 of an epoch's 4 steps (and at its end); a run killed
    after the save in the middle of epoch 2 resumes from that step and ends as the uninterrupted run."""
    settings = {"data": {"samples_per_epoch": 4}, "train": {"epochs": 2, "batch_size": 1, "eval_every_steps": 2}}
    full = train.train(tiny_config(tmp_path / "full", **settings))
    assert [h["epoch"] for h in full] == [0.5, 1, 1.5, 2]
    save = engine.training.save_checkpoint

    def killed(path, payload):
        save(path, payload)
        if path.name == "last.pt" and (payload["epoch"], payload["step"]) == (1, 2):
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(engine.training, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        train.train(tiny_config(tmp_path / "resumed", **settings))
    monkeypatch.undo()
    resumed = train.train(tiny_config(tmp_path / "resumed", **settings), resume=True)
    assert [h["psnr"] for h in resumed] == [h["psnr"] for h in full]
    assert logged_losses(tmp_path / "resumed") == logged_losses(tmp_path / "full")
    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("full", "resumed"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


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
    assert not (tmp_path / "run").exists()  # nothing left behind: no checkpoint, no logs, no empty folder


def test_validation_split_choices(tmp_path):
    make_pairs(tmp_path / "train", count=10, size=(48, 48))
    make_pairs(tmp_path / "test", count=3, size=(48, 48))
    holdout = tiny_config(tmp_path, data={"dataset": "paired", "root": str(tmp_path), "holdout_fraction": 0.2}).data
    train_set, val_set = build_training_sets(holdout)
    assert (len(train_set), len(val_set)) == (8, 2) and val_set.root == tmp_path / "train"
    anchors = tiny_config(tmp_path, data={"dataset": "paired", "root": str(tmp_path), "validation": "test-center-crop"}).data
    train_set, val_set = build_training_sets(anchors)
    assert (len(train_set), len(val_set)) == (10, 3) and val_set.root == tmp_path / "test"
    whole = tiny_config(tmp_path, data={"dataset": "paired", "root": str(tmp_path), "validation": "test-full"}).data
    _, val_set = build_training_sets(whole)
    assert val_set[0]["hazy"].shape == (3, 48, 48) and val_set.root == tmp_path / "test"  # the whole image, not a crop


def test_whole_test_images_of_different_sizes_validate_one_at_a_time(tmp_path):
    """valid_mode "test" of the releases (data.validation: test-full) on test images of two sizes."""
    make_pairs(tmp_path / "data" / "train", count=4, size=(40, 40))
    make_pairs(tmp_path / "data" / "test", count=1, size=(45, 61))
    make_pairs(tmp_path / "data" / "test2", count=1, size=(52, 40))
    for kind in ("GT", "hazy"):
        (tmp_path / "data" / "test2" / kind / "00.png").rename(tmp_path / "data" / "test" / kind / "01.png")
    config = tiny_config(tmp_path / "run", data={"dataset": "paired", "root": str(tmp_path / "data"),
                                                 "validation": "test-full", "crop_size": 32})
    history = train.train(config)
    summary = test_script.main(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(tmp_path / "data" / "test"),
                                "--out", str(tmp_path / "test"), "--no-images"])
    # validation scored what test.py scores
    assert summary["images"] == 2 and history[0]["psnr"] == pytest.approx(summary["psnr"], abs=1e-4)


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


def _ddp_process(rank, world_size, port, config):
    os.environ.update(WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train.train(config)



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def test_two_process_ddp_matches_single_process_gradient_accumulation(tmp_path):
    # one process: 2 micro-batches of 2 accumulated per step; DDP: 2 processes with one micro-batch of 2 each
    single = train.train(tiny_config(tmp_path / "single", train={"epochs": 2, "micro_batch_size": 2}))
    assert load_checkpoint(tmp_path / "single" / "last.pt")["epoch"] == 2
    mp.spawn(_ddp_process, args=(2, _free_port(), tiny_config(tmp_path / "ddp", train={"epochs": 2})), nprocs=2)
    single_losses, ddp_losses = logged_losses(tmp_path / "single"), logged_losses(tmp_path / "ddp")
    assert [s for s, _ in single_losses] == [s for s, _ in ddp_losses] == [0, 1, 2, 3]
    for (_, a), (_, b) in zip(single_losses, ddp_losses):  # measured ≤ 1.2e-7 (AVX-512), ≤ 1.8e-7 (AVX2) relative
        assert abs(a - b) <= 1e-5 * abs(a), (single_losses, ddp_losses)
    a, b = load_checkpoint(tmp_path / "single" / "last.pt")["model"], load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    weights = [k for k in a if "running" not in k and "num_batches" not in k]  # BN statistics are per process
    # measured 1.5e-5 (AVX-512), 2.5e-5 (AVX2), weights up to 1.0: summation order, amplified by AdamW's
    # normalised first steps
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in weights) < 1e-4
    assert len(single) == 2



def _without_batch_statistics(name, **args):
    """The network with its BatchNorm layers taken out: then nothing couples the images of a batch."""
    model = build_model(name, **args)
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(parent, child_name, torch.nn.Identity())
    return model



def test_accumulation_keeps_the_effective_batch(tmp_path, monkeypatch):
    # BatchNorm would see micro-batches of 2 instead of the batch of 4; without it both runs compute the same
    # mean loss and gradient, up to the order of the float32 sums
    monkeypatch.setattr("engine.training.build_model", _without_batch_statistics)
    whole = train.train(tiny_config(tmp_path / "whole"))
    halves = train.train(tiny_config(tmp_path / "halves", train={"micro_batch_size": 2}))
    whole_losses, halves_losses = logged_losses(tmp_path / "whole"), logged_losses(tmp_path / "halves")
    assert [s for s, _ in whole_losses] == [s for s, _ in halves_losses] == [0, 1]
    for (_, a), (_, b) in zip(whole_losses, halves_losses):  # measured: equal (AVX-512), ≤ 1.2e-7 × a (AVX2)
        assert abs(a - b) <= 1e-6 * a, (whole_losses, halves_losses)
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt")["model"], load_checkpoint(tmp_path / "halves" / "last.pt")["model"]
    assert not any("running_mean" in k for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5  # measured 1.3e-6 (both), weights up to 1.0
    assert abs(whole[0]["psnr"] - halves[0]["psnr"]) < 1e-4  # measured 6e-8 dB at 15.24 dB



@pytest.mark.parametrize(("amp", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float32), ("off", torch.float32)])
def test_the_training_step_runs_the_network_in_the_amp_dtype_on_cpu(tmp_path, monkeypatch, amp, dtype):
    """On the CPU bf16 autocast applies and the GPU's fp16 default trains in fp32: the dtype the stem convolution
    computes in, seen by a hook during training."""
    seen = []

    def build_with_hook(name, **args):
        model = build_model(name, **args)
        model.stem.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
        return model
    monkeypatch.setattr("engine.training.build_model", build_with_hook)
    train.train(tiny_config(tmp_path / amp, train={"amp": amp}))
    assert seen and set(seen[:2]) == {dtype}  # the two training steps (validation follows, in fp32)



def test_non_finite_losses_skip_steps_then_stop_the_run(tmp_path, monkeypatch):
    real_build_loss = build_loss
    calls = {"n": 0}

    def poisoned(terms):
        criterion = real_build_loss(terms)
        forward = criterion.forward

        def every_other_nan(output, target, hazy, global_feature=None):
            calls["n"] += 1
            total, parts = forward(output, target, hazy, global_feature)
            return (total * float("nan"), parts) if calls["n"] % 2 else (total, parts)
        criterion.forward = every_other_nan
        return criterion

    monkeypatch.setattr("losses.build_loss", poisoned)
    config = tiny_config(tmp_path / "run", train={"max_skipped_steps": 5})
    train.train(config)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["skipped_steps"] == 1
    config = tiny_config(tmp_path / "stop", train={"epochs": 10, "max_skipped_steps": 2})
    with pytest.raises(TrainingDiverged, match="3 steps had a non-finite loss"):
        train.train(config)



def test_ema_is_the_exponential_average_of_the_steps_evaluated_saved_and_loaded(tmp_path, monkeypatch):
    steps = []  # the network after each optimiser step, as the EMA receives it

    class Recording(AveragedModel):
        def update_parameters(self, model):
            steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            super().update_parameters(model)

    monkeypatch.setattr("engine.training.AveragedModel", Recording)
    history = train.train(tiny_config(tmp_path, train={"epochs": 2, "ema_decay": 0.5}))
    assert {"ema_psnr", "ema_ssim"} <= set(history[-1])
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["ema_updates"] == len(steps) == 4
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in steps[-1].items())
    # decay d = 0.5: the first step is copied, then ema ← d·ema + (1 − d)·θ_n, so ema = θ1/8 + θ2/8 + θ3/4 + θ4/2
    # for weights and float buffers (BatchNorm statistics) alike
    floats = [k for k, v in checkpoint["ema"].items() if v.is_floating_point()]
    expected = {k: sum(w * step[k].double() for w, step in zip((1 / 8, 1 / 8, 1 / 4, 1 / 2), steps)) for k in floats}
    # measured 1.0e-7 (AVX-512 and AVX2; float32 lerp rounding, values up to 1.0); the EMA is 0.068 away from
    # the last weights
    assert max((checkpoint["ema"][k].double() - expected[k]).abs().max().item() for k in floats) < 1e-6
    assert max((checkpoint["ema"][k] - steps[-1][k]).abs().max().item() for k in floats) > 0.01
    model = load_model(tmp_path / "last.pt")
    assert all(torch.equal(v, checkpoint["ema"][k]) for k, v in model.state_dict().items())



def test_channels_last_trains_like_contiguous(tmp_path):
    train.train(tiny_config(tmp_path / "nchw"))
    train.train(tiny_config(tmp_path / "nhwc", train={"channels_last": True}))
    nchw, nhwc = logged_losses(tmp_path / "nchw"), logged_losses(tmp_path / "nhwc")
    assert [s for s, _ in nchw] == [s for s, _ in nhwc] == [0, 1]
    for (_, a), (_, b) in zip(nchw, nhwc):
        assert abs(a - b) <= 1e-4 * a


# --- torchrun: elastic restarts, several nodes ---------------------------------------------------------------------------

ELASTIC_EPOCHS = 5


def torchrun(out_dir: Path, *launch: str, name: str = "run") -> subprocess.Popen:
    """train.py under torchrun on the CPU (gloo) with a tiny config of several short epochs, each checkpointed; what
    it prints goes to <name>.log beside out_dir."""
    config = out_dir.parent / f"{out_dir.name}.yaml"
    config.write_text(json.dumps(tiny_config(out_dir, train={"epochs": ELASTIC_EPOCHS}).to_dict()))
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # one thread per worker: the same sums in every run, quick when busy
    with open(out_dir.parent / f"{name}.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launch, "--monitor-interval=0.2",
                                 "train.py", str(config)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def workers(agent: subprocess.Popen) -> dict[str, int]:
    """RANK → process id of the workers a torchrun agent has started (its children, read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == agent.pid:
                environment = dict(v.split("=", 1) for v in (entry / "environ").read_text().split("\0") if "=" in v)
                found[environment["RANK"]] = int(entry.name)
        except (OSError, ValueError, KeyError):  # a process that ended meanwhile
            continue
    return found


@contextlib.contextmanager
def stopped_whatever_happens(*agents: subprocess.Popen):
    """Leaves no process behind, even when a test fails: the agents and the workers they started (each in a session
    of its own) are killed."""
    try:
        yield
    finally:
        for agent in agents:
            if agent.poll() is None:
                for pid in workers(agent).values():
                    os.kill(pid, signal.SIGKILL)
                agent.kill()
                agent.wait()


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory) -> tuple[Path, str]:
    """A run on two torchrun "nodes" of one worker each, meeting through c10d rendezvous on 127.0.0.1 as
    docs/configuration.md starts several machines: (its out_dir, what node 0 printed)."""
    folder, port = tmp_path_factory.mktemp("nodes"), _free_port()
    nodes = [torchrun(folder / "run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}", "--rdzv_backend=c10d",
                      f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes", name=f"node{rank}") for rank in (0, 1)]
    with stopped_whatever_happens(*nodes):
        codes = [node.wait(timeout=600) for node in nodes]
    printed = (folder / "node0.log").read_text() + (folder / "node1.log").read_text()
    assert codes == [0, 0], printed
    return folder / "run", printed


@pytest.mark.slow
def test_two_nodes_rendezvous_on_one_machine_and_train_one_run(two_node_run):
    out_dir, printed = two_node_run
    assert "device cpu × 2, precision torch.float32, batch 4 = 2 process(es) × 1 accumulation step(s) × 2" in printed
    checkpoint = load_checkpoint(out_dir / "last.pt")
    assert checkpoint["epoch"] == ELASTIC_EPOCHS and [h["epoch"] for h in checkpoint["history"]] == [1, 2, 3, 4, 5]
    assert checkpoint["torchrun_job"] == "two-nodes"


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_nothing_happened(two_node_run, tmp_path):
    agent = torchrun(tmp_path / "run", "--standalone", "--nproc_per_node=2", "--max-restarts=3")
    with stopped_whatever_happens(agent):
        for _ in range(30_000):
            if (tmp_path / "run" / "last.pt").is_file() or agent.poll() is not None:
                break
            time.sleep(0.02)
        os.kill(workers(agent)["1"], signal.SIGKILL)  # after the first checkpoint, in the middle of the run
        agent.wait(timeout=600)
    printed = (tmp_path / "run.log").read_text()
    # torchrun restarts both workers, once
    assert agent.returncode == 0 and re.search(r"torchrun restart 1: continuing from .*run/last.pt", printed), printed
    assert "torchrun restart 2" not in printed, printed
    restarted, uninterrupted = load_checkpoint(tmp_path / "run" / "last.pt"), load_checkpoint(two_node_run[0] / "last.pt")
    assert restarted["epoch"] == uninterrupted["epoch"] == ELASTIC_EPOCHS
    # resumed at an epoch boundary: the data order derives from (seed, epoch), so the run is the uninterrupted one
    assert restarted["model"].keys() == uninterrupted["model"].keys()
    assert all(torch.equal(restarted["model"][k], uninterrupted["model"][k]) for k in uninterrupted["model"])
    assert restarted["history"] == uninterrupted["history"]


RESTARTED_GROUP = """
import os
import torch
import torch.distributed as dist
from engine import finish_process, start_process
process = start_process(0)
total = torch.tensor([process.rank + 1.0])
dist.all_reduce(total)
print(f"restart {process.restarts}: rank {process.rank} of {process.world_size}, sum {total.item():g}", flush=True)
if process.rank == 1 and process.restarts < 3:
    os._exit(1)  # a lost worker: torchrun restarts both
finish_process(process)
"""


def test_each_restart_forms_its_process_group_afresh(tmp_path):
    """torchrun's agent keeps one store for the whole job: without keys of its own per restart, a restarted group
    read its predecessors' gloo addresses and failed to connect or hung (most runs of this script did, before)."""
    script = tmp_path / "group.py"
    script.write_text(RESTARTED_GROUP)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "--max-restarts=3", "--monitor-interval=0.2", str(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    printed = done.stdout + done.stderr
    assert done.returncode == 0 and "connectFullMesh failed" not in printed, printed[-3000:]
    assert sorted(re.findall(r"restart (\d): rank (\d) of 2, sum 3", printed)) == [
        (str(restart), str(rank)) for restart in range(4) for rank in range(2)], printed[-3000:]


def test_only_a_restarted_worker_of_the_same_torchrun_job_continues_unasked(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"epoch": 1, "torchrun_job": "job-a"})
    cpu = torch.device("cpu")
    assert engine.restarted_after_checkpoint(Process(0, 2, cpu, True, job="job-a", restarts=1), tmp_path / "last.pt")
    for process in (Process(0, 2, cpu, True, job="job-a", restarts=0),   # the job's first start: --resume or nothing
                    Process(0, 2, cpu, True, job="job-b", restarts=1),   # another job's checkpoint
                    Process(0, 2, cpu, True, job=None, restarts=1),      # rendezvous id "none": no job to tell
                    Process(0, 1, cpu)):                                  # not under torchrun
        assert not engine.restarted_after_checkpoint(process, tmp_path / "last.pt"), process
    assert not engine.restarted_after_checkpoint(Process(0, 2, cpu, True, job="job-a", restarts=1), tmp_path / "none.pt")
