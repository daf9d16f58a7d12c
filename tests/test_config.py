"""Configs: the released RESIDE-6K recipes read from the released files, the ablations, and config errors."""
import json
from pathlib import Path

import pytest

from utils.config import ConfigError, load_config

REFERENCE = Path(__file__).parent / "reference"
# This project's model → (released repository as kept in tests/reference/, the model name its train.py is given).
# MixCLDehazeNet's code names its language-guided networks MixDehazeNet-t/s/b/l too.
RELEASES = {f"mixdehazenet-{v}": ("MixDehazeNet", f"MixDehazeNet-{v}") for v in "tsbl"} | {
    f"mixcl-{v}": ("MixCLDehazeNet", f"MixDehazeNet-{v}") for v in "tsbl"}


def released_settings(repository: str, model: str) -> dict:
    """The settings the release's train.py trains `model` with on RESIDE-6K: configs/reside6k/<model>.json when
    that file exists, else configs/reside6k/default.json (its lines 99–101)."""
    folder = REFERENCE / repository / "configs" / "reside6k"
    path = folder / f"{model}.json"
    return json.loads((path if path.exists() else folder / "default.json").read_text())


def recipe_values(config) -> dict:
    """A config's values under the released JSON keys."""
    data, train = config.data, config.train
    return {"batch_size": train.batch_size, "patch_size": data.crop_size,
            "valid_mode": {"test-center-crop": "valid"}.get(data.validation, data.validation),
            "edge_decay": data.edge_decay, "only_h_flip": not data.rotate90, "optimizer": "adamw", "lr": train.lr,
            "epochs": train.epochs, "eval_freq": train.eval_every}


def test_every_released_setting_is_compared():
    settings = released_settings("MixDehazeNet", "MixDehazeNet-t")
    assert set(settings) == set(recipe_values(load_config("configs/reside6k/mixdehazenet-t.yaml")))


@pytest.mark.parametrize("model", sorted(RELEASES))
def test_reside6k_configs_are_the_released_recipes(model):
    config = load_config(f"configs/reside6k/{model}.yaml")
    assert config.model == model and config.data.root == "data/RESIDE-6K"
    assert recipe_values(config) == released_settings(*RELEASES[model])
    # Both train.py files: AdamW with torch's default weight decay, CosineAnnealingLR(T_max=epochs, eta_min=lr·1e-2),
    # autocast + GradScaler, nn.L1Loss + 0.1 × ContrastLoss_res (utils/CR_res.py).
    assert (config.train.weight_decay, config.train.min_lr_ratio, config.train.amp) == (0.01, 1e-2, "fp16")
    assert [(t.name, t.weight, t.args) for t in config.loss] == [
        ("l1", 1.0, {}), ("contrastive", 0.1, {"backbone": "resnet152", "as_released": True})]
    assert config.prior.mode == ("clip" if model.startswith("mixcl") else "none")
    assert config.prior.clip_model == "ViT-B-32" and config.prior.clip_pretrained == "openai"


def test_the_small_variants_differ_from_the_defaults_where_their_release_says():
    """MixDehazeNet-S and MixCLDehazeNet-S have files of their own; the other variants fall back to default.json."""
    small = load_config("configs/reside6k/mixdehazenet-s.yaml").train
    assert (small.batch_size, small.lr, small.eval_every) == (16, 1e-4, 10)
    assert load_config("configs/reside6k/mixcl-s.yaml").train.eval_every == 1
    assert load_config("configs/reside6k/mixdehazenet-b.yaml").train.batch_size == 32


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: mixdehazenet-t\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown config key.*train.epoch;"):
        load_config(path)
    with pytest.raises(ConfigError, match="train.batch_size: expected int, got 'big'"):
        load_config(None, ["train.batch_size=big"])
    with pytest.raises(ConfigError, match="train.amp must be"):
        load_config(None, ["train.amp=fp8"])
    assert load_config("configs/reside6k/mixdehazenet-s.yaml", ["train.lr=3e-4"]).train.lr == 3e-4



def test_ablations_differ_from_the_released_recipe_in_one_named_place():
    released = load_config("configs/reside6k/mixcl-s.yaml").to_dict()
    for name, expected in {"regulariser-principled": {"loss"}, "validation-holdout": {"data"}, "fusion-add": {"model_args"},
                           "prior-clip": set(), "prior-clip-soft": {"prior"}, "prior-labels": {"prior"},
                           "prior-none": {"model", "prior"}}.items():
        ablation = load_config(f"configs/ablations/{name}.yaml").to_dict()
        assert {k for k in released if k != "out_dir" and ablation[k] != released[k]} == expected, name


def test_every_shipped_config_is_valid():
    configs = sorted(Path("configs").rglob("*.yaml"))
    assert len(configs) >= 18
    for path in configs:
        load_config(path)  # raises ConfigError naming the key
