from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from utils.checkpoint import CheckpointError, is_project_checkpoint, load_checkpoint

from .registry import canonical_name, create_model


def build_model(name: str, checkpoint: Path | str | None = None, **kwargs) -> nn.Module:
    """Build a registered model; with `checkpoint`, also load its weights (this project's or official ones)."""
    model = create_model(name, **kwargs)
    if checkpoint is not None:
        load_weights(model, name, load_checkpoint(checkpoint), source=checkpoint)
    return model


def load_model(checkpoint: Path | str, name: str | None = None) -> nn.Module:
    """The network stored in `checkpoint`, in eval mode (a CheckpointError says why it cannot be loaded). This
    project's checkpoints name their model and
    its arguments (and set `model.prior_config`); for an official checkpoint pass `name` (e.g. "mixdehazenet-s")."""
    contents = load_checkpoint(checkpoint)
    if is_project_checkpoint(contents):
        model = create_model(contents["model_name"], **contents.get("model_args", {}))
        model.prior_config = contents.get("config", {}).get("prior")  # how its training data got their prior
        name = name or contents["model_name"]  # a different `name` is refused by load_weights
    elif name is None:
        raise CheckpointError(f"{checkpoint} is not a checkpoint of this project: pass the model it holds with --model "
                              f"(model name in Python), e.g. mixdehazenet-s")
    else:
        model = create_model(name)
    load_weights(model, name, contents, source=checkpoint)
    return model.eval()


def load_weights(model: nn.Module, name: str, contents: dict[str, Any], source: Path | str = "checkpoint") -> None:
    """Load a loaded checkpoint's weights into `model` (built as `name`): the EMA weights when it has them.

    Official checkpoints are dicts holding the state dict under `state_dict` (MixDehazeNet) or `model`
    (KA-Net), with the `module.` prefix of nn.DataParallel; a model that knows a foreign layout converts it
    in its `convert_checkpoint` method.
    """
    if is_project_checkpoint(contents):
        if canonical_name(contents["model_name"]) != canonical_name(name):
            raise CheckpointError(f"{source} holds a {contents['model_name']!r} model, not {name!r} (drop --model: "
                                  f"this project's checkpoints name their model)")
        state_dict = contents.get("ema", contents["model"])  # the moving average, when training kept one
        convert = None
    else:
        state_dict = next((contents[k] for k in ("state_dict", "model") if isinstance(contents.get(k), dict)), contents)
        convert = getattr(model, "convert_checkpoint", None)
    try:
        if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise KeyError("no state dict of tensors in it")
        state_dict = convert(state_dict) if convert is not None else state_dict
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except (KeyError, RuntimeError) as e:  # unknown official names, or tensors of the wrong shape
        raise CheckpointError(f"{source} does not hold {name!r} weights ({' '.join(str(e).split())[:300]})") from None
    if not all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()):
        raise CheckpointError(f"{source} holds non-finite weights (NaN or inf): a run that diverged; its outputs would "
                              f"be black images and NaN scores")
    if missing or unexpected:
        raise CheckpointError(f"{source} does not hold {name!r} weights: missing {len(missing)} "
                              f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}), unexpected {len(unexpected)} "
                              f"({', '.join(unexpected[:3])}{'…' if len(unexpected) > 3 else ''})")
