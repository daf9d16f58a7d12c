"""Checkpoints: one self-describing file per snapshot, written atomically.

A checkpoint of this project is a dict:
    format       CHECKPOINT_FORMAT
    model_name   registered model name, e.g. "mixdehazenet-t"
    model        the network's state_dict
    config       the full training config (plain data)
    epoch        number of finished epochs
    optimizer, scheduler, scaler, rng, loss_state   training state for `--resume` (loss_state: what loss
                 terms carry between steps, e.g. the KA-Net reweighting memory bank)
    metrics      validation metrics of this snapshot
Everything is tensors and plain Python data, so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "mixcl-dehaze/1"


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load any checkpoint file (this project's or a foreign one) onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"checkpoint {path} cannot be loaded: {e}") from e
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {path} holds a {type(checkpoint).__name__}, expected a dict")
    return checkpoint


def is_project_checkpoint(checkpoint: dict[str, Any]) -> bool:
    return checkpoint.get("format") == CHECKPOINT_FORMAT
