"""Building a registered network, and loading weights into it from any checkpoint this project reads."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn.modules.module import register_module_parameter_registration_hook

from utils.checkpoint import CheckpointError, is_project_checkpoint, load_checkpoint

from .interface import DehazingNetwork
from .pretrained import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_pretrained_reference,
    pretrained_folder,
    read_pretrained_config,
    read_weights,
    weight_shapes,
)
from .registry import canonical_name, create_model, stored_model


def build_model(name: str, checkpoint: Path | str | None = None, **kwargs) -> DehazingNetwork:
    """Build a registered model; with `checkpoint`, also load its weights (this project's or official ones)."""
    model = create_model(name, **kwargs)
    if checkpoint is not None:
        load_weights(model, name, load_checkpoint(checkpoint), source=checkpoint)
    return model


def load_model(checkpoint: Path | str, name: str | None = None) -> DehazingNetwork:
    """The network stored in `checkpoint`, in eval mode (a CheckpointError says why it cannot be loaded). This
    project's checkpoints and model folders (a folder, or a Hugging Face repository id "org/name":
    models/pretrained.py) name their model and its constructor arguments (a MixCL network's prior settings among
    them); for an official checkpoint pass `name` (e.g. "mixdehazenet-s")."""
    if is_pretrained_reference(checkpoint):
        model = from_pretrained(checkpoint)
        if name is not None and canonical_name(name) != model.model_name:
            raise CheckpointError(f"{checkpoint} holds a {model.model_name!r} model, not {name!r} (drop --model: model "
                                  f"folders name their model)")
        return model
    model, _ = checkpoint_model(load_checkpoint(checkpoint), checkpoint, name)
    return model


def from_pretrained(source: Path | str) -> DehazingNetwork:
    """The network of a model folder or a Hub repository ("org/name"), in eval mode, with its prior settings:
    what `load_model` gives for a checkpoint file. Every problem is one CheckpointError naming the file. Nothing in
    the folder is executed: config.json is data, model.safetensors holds tensors alone."""
    folder = pretrained_folder(source)
    name, arguments = read_pretrained_config(folder)
    path = folder / WEIGHTS_FILE
    model = build_checked(name, arguments, weight_shapes(path), folder / CONFIG_FILE, path)
    load_weights(model, name, read_weights(path), source=path)
    return model.eval()


def build_checked(name: str, arguments: dict, shapes: dict[str, tuple[int, ...]], source: Path | str,
                  weights: Path | str) -> DehazingNetwork:
    """The network `name` built with `arguments` read from `source` (a model folder from a stranger, say), once a
    build on the meta device, which allocates nothing, has shown that its weights have the `shapes` the `weights`
    file holds: a config asking for an absurd network is refused before anything is allocated."""
    held = sum(math.prod(shape) for shape in shapes.values())
    if (largest := max(_integers(arguments), default=0)) > held:  # a width or depth no file this size can hold
        raise CheckpointError(f"{source}: its model_args ask for {largest:,}, more than the {held:,} numbers the file's "
                              f"weights hold")
    try:
        with torch.device("meta"), _at_most_parameters(len(shapes), source):
            expected = {key: tuple(value.shape) for key, value in create_model(name, **arguments).state_dict().items()}
    except CheckpointError:
        raise
    except Exception as e:  # arguments from a file make a constructor fail in any way (wrong types, lengths, values)
        raise CheckpointError(f"{source}: {name} cannot be built with its model_args ({type(e).__name__}: {e})") from None
    if problem := _shape_mismatch(expected, shapes):
        described = "its model_args describe" if str(source) == str(weights) else f"{source} describes"
        raise CheckpointError(f"{weights} does not hold {name!r} weights as {described} them ({problem})")
    return create_model(name, **arguments)


def _integers(value: Any) -> Iterator[int]:
    """Every whole number in a structure of arguments (dicts, lists), true and false aside."""
    if isinstance(value, int) and not isinstance(value, bool):
        yield value
    elif isinstance(value, dict | list | tuple):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _integers(item)


@contextlib.contextmanager
def _at_most_parameters(count: int, source: Path | str) -> Iterator[None]:
    """Building stops with a CheckpointError once the network has more parameters than the `count` tensors the file
    holds: it cannot fit them, and an absurd depth would take minutes to build even on the meta device."""
    registered = 0

    def counted(module, name, parameter):
        nonlocal registered
        registered += 1
        if registered > count:
            raise CheckpointError(f"{source}: its model_args build a network of more tensors than the {count} the file "
                                  f"holds")

    handle = register_module_parameter_registration_hook(counted)
    try:
        yield
    finally:
        handle.remove()


def _shape_mismatch(expected: dict[str, tuple], held: dict[str, tuple]) -> str | None:
    """How the weights a network needs differ from those a file holds, in a few words; None when they do not."""
    def shape(s: tuple) -> str:
        return "×".join(map(str, s)) or "a scalar"

    differing = [k for k in expected if k in held and expected[k] != held[k]]
    missing, unexpected = [k for k in expected if k not in held], [k for k in held if k not in expected]
    if differing:
        more = f"; {len(differing) - 1} more differ" if len(differing) > 1 else ""
        return f"{differing[0]} would be {shape(expected[differing[0]])}, it holds {shape(held[differing[0]])}{more}"
    if missing or unexpected:
        return (f"missing {len(missing)} ({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}), unexpected "
                f"{len(unexpected)} ({', '.join(unexpected[:3])}{'…' if len(unexpected) > 3 else ''})")
    return None


def checkpoint_model(contents: dict[str, Any], source: Path | str, name: str | None = None) -> tuple[DehazingNetwork, dict]:
    """(the network of a loaded checkpoint in eval mode, the constructor arguments it was built with)."""
    if is_project_checkpoint(contents):
        model_name, arguments = project_model(contents, source)
        name = name or model_name  # a different `name` is refused by load_weights
        model = build_checked(model_name, arguments, project_shapes(contents, source), source, source)
    elif name is None:
        raise CheckpointError(f"{source} is not a checkpoint of this project: pass the model it holds with --model "
                              f"(model name in Python), e.g. mixdehazenet-s")
    else:
        model_name, arguments = name, {}
        model = create_model(model_name)
    load_weights(model, name, contents, source=source)
    return model.eval(), arguments


def project_model(contents: dict[str, Any], source: Path | str) -> tuple[str, dict]:
    """(registered name, constructor arguments) of a checkpoint of this project. Checkpoints written before the
    prior settings became a constructor argument of MixCL networks carry them in their training config."""
    name, arguments = stored_model(contents.get("model_name"), contents.get("model_args", {}), source)
    prior = (contents.get("config") or {}).get("prior")
    if "prior" not in arguments and prior and prior.get("mode", "none") != "none":
        arguments = arguments | {"prior": prior}
    return name, arguments


def project_shapes(contents: dict[str, Any], source: Path | str) -> dict[str, tuple[int, ...]]:
    """name → shape of the weights a checkpoint of this project holds (its moving average's, when it kept one)."""
    state_dict = contents.get("ema", contents.get("model"))
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{source} does not hold {contents.get('model_name')!r} weights (no state dict of tensors "
                              f"in it)")
    return {key.removeprefix("module."): tuple(value.shape) for key, value in state_dict.items()}


def checkpoint_state_dict(model: DehazingNetwork, name: str, contents: dict[str, Any], source: Path | str) -> dict:
    """The state dict a loaded checkpoint holds for `model`, in this project's names: the EMA weights when training
    kept them; an official layout converted by the model's `convert_checkpoint`; the `module.` prefix of
    nn.DataParallel removed."""
    if is_project_checkpoint(contents):
        if canonical_name(contents["model_name"]) != canonical_name(name):
            raise CheckpointError(f"{source} holds a {contents['model_name']!r} model, not {name!r} (drop --model: "
                                  f"this project's checkpoints name their model)")
        state_dict = contents.get("ema", contents["model"])  # the moving average, when training kept one
    else:
        state_dict = next((contents[k] for k in ("state_dict", "model") if isinstance(contents.get(k), dict)), contents)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise KeyError("no state dict of tensors in it")
    state_dict = state_dict if is_project_checkpoint(contents) else model.convert_checkpoint(state_dict)
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def load_weights(model: DehazingNetwork, name: str, contents: dict[str, Any], source: Path | str = "checkpoint") -> None:
    """Load a loaded checkpoint's weights into `model` (built as `name`): this project's checkpoints, state dicts of
    this project's networks (also as saved from nn.DataParallel), and the official layouts (MixDehazeNet:
    `state_dict`, KA-Net: `model`, with `module.` prefixes), which a model converts in its `convert_checkpoint`."""
    try:
        missing, unexpected = model.load_state_dict(checkpoint_state_dict(model, name, contents, source), strict=False)
    except (KeyError, RuntimeError) as e:  # unknown official names, or tensors of the wrong shape
        raise CheckpointError(f"{source} does not hold {name!r} weights ({' '.join(str(e).split())[:300]})") from None
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise CheckpointError(f"{source} holds non-finite weights (NaN or inf): a run that diverged; its outputs would "
                              f"be black images and NaN scores")
    if missing or unexpected:
        raise CheckpointError(f"{source} does not hold {name!r} weights: missing {len(missing)} "
                              f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}), unexpected {len(unexpected)} "
                              f"({', '.join(unexpected[:3])}{'…' if len(unexpected) > 3 else ''})")
