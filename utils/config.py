"""Experiment configuration: plain YAML read into typed dataclasses.

A config file states what differs from the defaults below (the RESIDE-6K configs state their whole released
recipe). Unknown keys, wrongly typed values and values out of range are errors naming the key, raised before
any training starts; whether the names fit what is registered (models, losses, priors) is checked by
engine/checks.py. Command-line overrides use dotted keys: `train.batch_size=8 data.root=/data/RESIDE-6K`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cli import MAX_SIDE, UserError
from .paths import unreadable_file
from .precision import AMP_NAMES


class ConfigError(UserError, ValueError):
    pass


VALIDATION_MODES = ("holdout", "test-center-crop", "test-full")


class ConfigLoader(yaml.SafeLoader):
    """YAML with the booleans of YAML 1.2, true and false only: PyYAML's YAML 1.1 also reads on, off, yes and no as
    booleans, which would turn `amp: off` or `train.amp=off` into False instead of the amp name."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rule) for tag, rule in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def parse_yaml(text: str):
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: builds plain data only


@dataclass
class DataConfig:
    dataset: str = "paired"            # "paired": RESIDE-6K layout under `root`; "synthetic": datasets/synthetic.py
    root: str = "data/RESIDE-6K"       # holds <train_split>/{GT,hazy} and <test_split>/{GT,hazy}
    train_split: str = "train"
    test_split: str = "test"
    crop_size: int = 256
    edge_decay: float = 0.0            # extra probability of crops touching the border (DehazeFormer)
    rotate90: bool = False             # random 90° rotations (indoor recipes only)
    # "holdout": validate on centre crops of `holdout_fraction` of the train split's clear images (default: the
    # test set stays unseen until test.py). The releases' practice, selecting on the test split: "test-center-crop"
    # (their valid_mode "valid": centre crops) or "test-full" (their valid_mode "test": whole images).
    validation: str = "holdout"
    holdout_fraction: float = 0.02
    samples_per_epoch: int = 256       # synthetic dataset only
    # synthetic dataset: clean images of your own (default: scikit-image's photos), optional depth maps
    # (<depth_root>/<stem>.png|.npy), and overrides of the haze model's switches and ranges
    # (datasets/haze_model.py, e.g. {low_light: true, jpeg: false, beta: [1.0, 3.0]})
    clean_root: str | None = None
    depth_root: str | None = None
    haze: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 4


@dataclass
class TrainConfig:
    epochs: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    min_lr_ratio: float = 1e-2         # cosine annealing per epoch from lr down to lr·min_lr_ratio
    weight_decay: float = 0.01         # torch's AdamW default, as the released recipes use it
    amp: str = "fp16"                  # "fp16" (with GradScaler), "bf16" or "off"; on the CPU only bf16 applies
    seed: int = 0
    eval_every: int = 1                # epochs between validations (and best-checkpoint updates)
    eval_every_steps: int = 0          # > 0: also validate and save every so many steps within an epoch (long epochs)
    # Per process and step. Gradients accumulate over batch_size / (micro_batch_size × processes) steps, so
    # the effective batch stays batch_size on fewer GPUs. Default: batch_size / processes (no accumulation).
    micro_batch_size: int | None = None
    sync_batchnorm: bool = False       # synchronise BatchNorm statistics across GPUs (CUDA, several processes)
    channels_last: bool = False        # NHWC memory format for the convolutions
    compile: bool = False              # torch.compile the model
    keep_freed_cpu_memory: bool = True  # CPU runs: glibc keeps freed memory for reuse (utils/cpu_memory.py)
    ema_decay: float = 0.0             # > 0: keep an exponential moving average of the weights (evaluated, saved)
    max_skipped_steps: int = 20        # steps skipped for a non-finite loss before the run stops


@dataclass
class PriorConfig:
    """The language prior of MixCL models (prior/); "none" for plain backbones."""
    mode: str = "none"                 # "clip" (MixCLDehazeNet), "clip-soft", "labels" or "none"
    clip_model: str = "ViT-B-32"       # open_clip model name
    clip_pretrained: str = "openai"    # open_clip tag, or a weights file (e.g. under pretrained/)
    classes: list[str] = field(default_factory=lambda: ["indoor", "outdoor"])
    template: str = "a photo of a {c}"
    # How CLIP reads the images of training and test folders: "opencv" (EXIF orientation applied, as everywhere in
    # this project) or "pil" (PIL without EXIF orientation, as the released MixCLDehazeNet code reads them).
    image_reader: str = "opencv"
    cache_dir: str = "cache/clip_prior"
    # When the CLIP weights are missing, say so once and train with the `labels` prior instead (demo only).
    fallback_to_labels: bool = False
    # The class text features (one row per class) of the CLIP modes: written by training into the network's prior
    # settings, so that a class given by --label needs no CLIP; not set by hand.
    text_features: list[list[float]] | None = None


@dataclass
class LossTerm:
    name: str = "l1"
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the loss


@dataclass
class Config:
    model: str = "mixdehazenet-t"
    model_args: dict[str, Any] = field(default_factory=dict)   # extra constructor arguments, e.g. {fusion: add}
    out_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    loss: list[LossTerm] = field(default_factory=lambda: [LossTerm()])
    log_images: int = 4                # validation samples shown in TensorBoard each evaluation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: Any, where: str):
    if not dataclasses.is_dataclass(cls):
        return _coerce(cls, values, where)
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(f'{where}{k}' for k in unknown)}; "
                          f"known keys here: {', '.join(sorted(known))}")
    return cls(**{k: _build(hints[k], v, f"{where}{k}.") for k, v in values.items()})


def _coerce(kind: Any, value: Any, where: str):
    where = where.rstrip(".")
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
        if value is None and type(None) in typing.get_args(kind):
            return None
        (kind,) = [k for k in typing.get_args(kind) if k is not type(None)]
    if typing.get_origin(kind) in (dict, list):
        return _coerce_container(kind, value, where)
    return _coerce_scalar(kind, value, where)


def _coerce_container(kind: Any, value: Any, where: str):
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    (item,) = typing.get_args(kind)
    return [_build(item, v, f"{where}[{i}].") for i, v in enumerate(value)]


def _coerce_scalar(kind: type, value: Any, where: str):
    if kind is float and not isinstance(value, bool):
        try:  # YAML reads 1e-4 (no dot) as a string; accept it and ints as floats
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return number
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    tree[leaf] = value


def config_from_dict(values: dict[str, Any]) -> Config:
    config = _build(Config, values, "")
    validate(config)
    return config


def load_config(path: Path | str | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or none: all defaults) and apply `key.sub=value` overrides (values parsed as YAML)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if problem := unreadable_file(path):
            raise ConfigError(f"config file {path}: {problem}")
        try:
            values = parse_yaml(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config is a YAML mapping")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        _set_dotted(values, key.strip(), value)
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def validate(config: Config) -> None:
    """Check value ranges and choices that types alone do not catch (names are engine/checks.py's)."""
    data, train = config.data, config.train
    checks = [
        (data.dataset in ("paired", "synthetic"), f"data.dataset must be 'paired' or 'synthetic', got {data.dataset!r}"),
        (data.validation in VALIDATION_MODES,
         f"data.validation must be one of {', '.join(VALIDATION_MODES)}, got {data.validation!r}"),
        (0 < data.holdout_fraction < 1, f"data.holdout_fraction must lie in (0, 1), got {data.holdout_fraction}"),
        # any size, as in the releases: every network pads its input to its own size rule (models/interface.py)
        (0 < data.crop_size <= MAX_SIDE, f"data.crop_size must lie in [1, {MAX_SIDE}], got {data.crop_size}"),
        (0 <= data.edge_decay <= 1, f"data.edge_decay must lie in [0, 1], got {data.edge_decay}"),
        (data.num_workers >= 0, f"data.num_workers must be ≥ 0, got {data.num_workers}"),
        (train.epochs > 0 and train.batch_size > 0 and train.eval_every > 0,
         "train.epochs, batch_size and eval_every must be positive"),
        (train.eval_every_steps >= 0, f"train.eval_every_steps must be ≥ 0 (0: by epochs only), got {train.eval_every_steps}"),
        (train.lr > 0 and 0 < train.min_lr_ratio <= 1,
         f"train.lr must be > 0 and min_lr_ratio in (0, 1], got {train.lr}, {train.min_lr_ratio}"),
        (train.weight_decay >= 0, f"train.weight_decay must be ≥ 0, got {train.weight_decay}"),
        (train.amp in AMP_NAMES, f"train.amp must be one of {', '.join(AMP_NAMES)}, got {train.amp!r}"),
        (train.micro_batch_size is None or 0 < train.micro_batch_size <= train.batch_size,
         f"train.micro_batch_size must lie in [1, batch_size], got {train.micro_batch_size}"),
        (0 <= train.ema_decay < 1, f"train.ema_decay must lie in [0, 1), got {train.ema_decay}"),
        (train.max_skipped_steps >= 0, f"train.max_skipped_steps must be ≥ 0, got {train.max_skipped_steps}"),
        (len(config.loss) > 0, "loss must list at least one term"),
        (len(set(config.prior.classes)) == len(config.prior.classes) > 1,
         f"prior.classes must name at least two distinct classes, got {config.prior.classes}"),
        ("{c}" in config.prior.template, f"prior.template must contain {{c}}, got {config.prior.template!r}"),
        (config.prior.image_reader in ("opencv", "pil"),
         f"prior.image_reader must be 'opencv' or 'pil', got {config.prior.image_reader!r}"),
    ]
    problems = [message for ok, message in checks if not ok]
    for rule in (lambda: micro_batches(train.batch_size, train.micro_batch_size, 1),
                 lambda: check_loss_names([t.name for t in config.loss])):
        try:
            rule()
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("; ".join(problems))


def micro_batches(batch_size: int, micro_batch_size: int | None, world_size: int) -> tuple[int, int]:
    """(micro-batch size, accumulation steps) of one optimizer step over `batch_size` samples shared by
    `world_size` processes: the batch must be a multiple of micro-batch × processes. Default micro-batch:
    batch_size / processes."""
    micro = micro_batch_size or batch_size // world_size
    if micro < 1 or batch_size % (micro * world_size):
        raise ConfigError(f"train.batch_size {batch_size} is not a multiple of train.micro_batch_size {micro} "
                          f"× {world_size} process(es)")
    return micro, batch_size // (micro * world_size)


def check_loss_names(names: list[str]) -> None:
    """Each loss term at most once (the terms are kept, weighted and logged by name)."""
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"a loss is listed twice: {', '.join(repeated)} (in {names})")


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (nested sections compared key by key)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key not in ("haze", "model_args"):
            changed += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}")
    return changed
