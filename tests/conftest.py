import copy
import importlib.util
import json
import os
from pathlib import Path

import open_clip
import pytest
import torch

from models import build_model, model_class
from models.mixdehazenet import ChannelAttention, EnhancedParallelAttention, SKFusion
from utils.checkpoint import save_checkpoint
from utils.config import Config, config_from_dict

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

LABELS_PRIOR = {"mode": "labels", "classes": ["indoor", "outdoor"]}  # a prior that needs no CLIP weights
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory):
    """A randomly initialised open_clip model registered as "tiny-clip", saved as a local weights file."""
    folder = tmp_path_factory.mktemp("clip")
    (folder / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / "tiny-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), folder / "tiny-clip.bin")
    return folder / "tiny-clip.bin"


def tiny_prior_config(weights, tmp_path, mode="clip") -> dict:
    return {"mode": mode, "clip_model": "tiny-clip", "clip_pretrained": str(weights), "cache_dir": str(tmp_path / "cache")}


def tiny_config(out_dir, model="mixdehazenet-t", data=None, train=None, **sections) -> Config:
    """A config that trains in seconds on the CPU: synthetic 32-px crops, 8 samples, one epoch of batches of 4 at
    lr 1e-3, amp off. `data`, `train` update those sections; other sections (loss=[...], prior={...},
    model_args={...}) pass through."""
    return config_from_dict(copy.deepcopy({
        "model": model, "out_dir": str(out_dir),
        "data": {"dataset": "synthetic", "crop_size": 32, "samples_per_epoch": 8, "num_workers": 0, **(data or {})},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "amp": "off", **(train or {})},
        **sections,
    }))


def write_checkpoint(path, model_name="mixdehazenet-t", model_args=None, prior=None, net=None) -> Path:
    """A checkpoint of this project holding `net` (default: a freshly built `model_name`), with the prior's
    settings among its arguments when given; returns `path`."""
    model_args = dict(model_args or {}) | ({"prior": dict(prior)} if prior and model_class(model_name).takes_prior else {})
    if net is None:
        net = build_model(model_name, **model_args)
    save_checkpoint(path, {"model_name": model_name, "model_args": model_args, "model": net.state_dict()})
    return Path(path)


def load_script(name: str):
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _require_shared(what: str) -> Path:
    path = SHARED / what
    if not path.exists():
        message = (f"needs {path}: the reference material (test vectors, sample data) that lives beside the "
                   f"checkout at ../shared; absent on this machine")
        if os.environ.get("MIXCL_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return _require_shared("vectors")


@pytest.fixture(scope="session")
def reside_samples() -> Path:
    return _require_shared("data/reside_samples")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never download weights, even on a connected machine: every weights server looks unreachable
    (a test that simulates a connection patches these back)."""
    monkeypatch.setattr("models.weights.server_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr("prior.clip.server_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr("models.pretrained.server_reachable", lambda url, timeout=3.0: False)


@pytest.fixture(scope="session")
def real_hazy() -> Path:
    return _require_shared("data/real_hazy")


@pytest.fixture(scope="module")
def global_statistics_network():
    """MixDehazeNet-T whose gates lean on the image-wide means, as a trained network's do: freshly
    initialised ones barely depend on them (tiles then agree with the whole image at any rate), so the
    layers that read the pooled statistics are amplified ×5 and the output head ×5."""
    torch.manual_seed(0)
    net = build_model("mixdehazenet-t").eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, ChannelAttention):
                module.fc1.weight *= 5
            elif isinstance(module, EnhancedParallelAttention):
                module.value_gate.weight *= 5
            elif isinstance(module, SKFusion):
                module.reduce.weight *= 5
        net.head.weight *= 5
    return net
