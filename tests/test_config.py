"""Configs: the released recipes read from the released files, the ablations, and config errors."""
import json
from pathlib import Path

import pytest

from utils.config import ConfigError, load_config

REFERENCE = Path(__file__).parent / "reference"
RELEASES = ("MixDehazeNet", "MixCLDehazeNet")  # as kept in tests/reference/, with their configs/<exp>/*.json
FAMILIES = {"mixdehazenet": "MixDehazeNet", "mixcl": "MixCLDehazeNet"}  # this project's model → its release
EXPERIMENTS = ("reside6k", "indoor", "outdoor", "haze4k", "densehaze", "nhhaze")  # the releases' --exp settings
# The keys both released train.py files read from a settings file (lines 96–190 of each); indoor T's file has three
# more (warmup_epochs, const_epochs, frozen_epochs) that nothing reads.
READ_BY_TRAIN_PY = {"batch_size", "patch_size", "valid_mode", "edge_decay", "only_h_flip", "optimizer", "lr", "epochs",
                    "eval_freq"}


def released_file(release: str, experiment: str, size: str) -> Path | None:
    """The settings file the release's train.py reads for `--exp experiment --model MixDehazeNet-<size>`:
    configs/<exp>/MixDehazeNet-<size>.json when it exists, else configs/<exp>/default.json (its lines 99–101; both
    releases name their networks MixDehazeNet-t/s/b/l); None when neither exists (the release cannot run it)."""
    folder = REFERENCE / release / "configs" / experiment
    for path in (folder / f"MixDehazeNet-{size}.json", folder / "default.json"):
        if path.exists():
            return path
    return None


def recipe_values(config) -> dict:
    """A config's values under the released JSON keys."""
    data, train = config.data, config.train
    return {"batch_size": train.batch_size, "patch_size": data.crop_size,
            "valid_mode": {"test-center-crop": "valid", "test-full": "test"}.get(data.validation, data.validation),
            "edge_decay": data.edge_decay, "only_h_flip": not data.rotate90, "optimizer": "adamw", "lr": train.lr,
            "epochs": train.epochs, "eval_freq": train.eval_every}


SETTINGS = [(family, size, experiment) for family in FAMILIES for size in "tsbl" for experiment in EXPERIMENTS]


def test_each_release_has_21_settings_files_kept_unchanged():
    for release in RELEASES:
        files = sorted((REFERENCE / release / "configs").rglob("*.json"))
        assert len(files) == 21 and {f.parent.name for f in files} == set(EXPERIMENTS)
        assert (REFERENCE / release / "configs" / "nhhaze" / "MixDehazeNet-l.json").stat().st_size == 0  # empty as released
    for file in (REFERENCE / "MixDehazeNet" / "configs").rglob("*.json"):
        twin = REFERENCE / "MixCLDehazeNet" / file.relative_to(REFERENCE / "MixDehazeNet")
        differs = file.read_bytes() != twin.read_bytes()
        assert differs == (str(file.relative_to(REFERENCE / "MixDehazeNet")) in (
            "configs/indoor/MixDehazeNet-b.json", "configs/outdoor/MixDehazeNet-b.json", "configs/reside6k/MixDehazeNet-s.json"))


@pytest.mark.parametrize("family, size, experiment", SETTINGS)
def test_configs_are_the_released_recipes(family, size, experiment):
    release, path = FAMILIES[family], Path(f"configs/{experiment}/{family}-{size}.yaml")
    released = released_file(release, experiment, size)
    if released is None:  # densehaze and nhhaze have files for S and L only, and no default.json
        assert not path.exists()
        return
    settings = json.loads(released.read_text() or (REFERENCE / release / "configs/densehaze/MixDehazeNet-l.json").read_text())
    config = load_config(path)
    assert config.model == f"{family}-{size}" and config.out_dir == f"runs/{experiment}/{family}-{size}"
    assert set(settings) - READ_BY_TRAIN_PY == ({"warmup_epochs", "const_epochs", "frozen_epochs"}
                                                if (experiment, size) == ("indoor", "t") else set())
    if settings["valid_mode"] == "test":  # whole test images: behind a switch; held-out validation by default
        assert config.data.validation == "holdout"
        config = load_config(path, ["data.validation=test-full"])
    assert recipe_values(config) == {key: settings[key] for key in READ_BY_TRAIN_PY}
    # Both train.py files: AdamW with torch's default weight decay, CosineAnnealingLR(T_max=epochs, eta_min=lr·1e-2),
    # autocast + GradScaler, nn.L1Loss + 0.1 × ContrastLoss_res (utils/CR_res.py).
    assert (config.train.weight_decay, config.train.min_lr_ratio, config.train.amp) == (0.01, 1e-2, "fp16")
    assert [(t.name, t.weight, t.args) for t in config.loss] == [
        ("l1", 1.0, {}), ("contrastive", 0.1, {"backbone": "resnet152", "as_released": True})]
    assert config.prior.mode == ("clip" if family == "mixcl" else "none")
    assert config.prior.clip_model == "ViT-B-32" and config.prior.clip_pretrained == "openai"
    assert config.train.eval_every_steps == (2000 if experiment == "outdoor" else 0)


def test_every_released_setting_is_compared():
    assert set(recipe_values(load_config("configs/reside6k/mixdehazenet-t.yaml"))) == READ_BY_TRAIN_PY
    assert len([s for s in SETTINGS if released_file(FAMILIES[s[0]], s[2], s[1])]) == 40
    assert sum(len(list(Path("configs", experiment).glob("mix*.yaml"))) for experiment in EXPERIMENTS) == 40


def test_the_small_variants_differ_from_the_defaults_where_their_release_says():
    """MixDehazeNet-S and MixCLDehazeNet-S have files of their own; the other variants fall back to default.json."""
    small = load_config("configs/reside6k/mixdehazenet-s.yaml").train
    assert (small.batch_size, small.lr, small.eval_every) == (16, 1e-4, 10)
    assert load_config("configs/reside6k/mixcl-s.yaml").train.eval_every == 1
    assert load_config("configs/reside6k/mixdehazenet-b.yaml").train.batch_size == 32
    assert load_config("configs/indoor/mixdehazenet-b.yaml").train.batch_size == 32
    assert load_config("configs/indoor/mixcl-b.yaml").train.batch_size == 16


def test_off_is_the_amp_name_not_a_boolean(tmp_path):
    """YAML 1.1 reads off/on/yes/no as booleans; configs read them as words (YAML 1.2), true and false as booleans."""
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    (tmp_path / "c.yaml").write_text("train:\n  amp: off\n  compile: true\n")
    assert (load_config(tmp_path / "c.yaml").train.amp, load_config(tmp_path / "c.yaml").train.compile) == ("off", True)
    with pytest.raises(ConfigError, match="data.rotate90: expected bool, got 'yes'"):
        load_config(None, ["data.rotate90=yes"])


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
