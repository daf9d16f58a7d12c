"""Checkpoint files: one self-describing file per snapshot, written atomically.

A checkpoint of this project is a dict:
    format       CHECKPOINT_FORMAT
    model_name   registered model name, e.g. "mixdehazenet-t"
    model_args   extra constructor arguments (e.g. the prior's text_dim)
    model        the network's state_dict (and `ema`, `ema_updates` when training kept a moving average)
    config       the full training config (plain data)
    epoch        number of finished epochs
    optimizer, scheduler, scaler, rng, loss_state   training state for `--resume` (loss_state: what loss
                 terms carry between steps, e.g. the KA-Net reweighting memory bank)
    metrics, best_psnr, history, skipped_steps     what the run measured
    torchrun_job the torchrun job id of the run that wrote it (None outside torchrun): a worker torchrun restarts
                 continues the checkpoint of its own job by itself
Everything is tensors and plain Python data, so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import errno
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .cli import UserError
from .paths import unreadable_file

CHECKPOINT_FORMAT = "mixcl-dehaze/1"


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be loaded, or does not fit the network asked for."""


def _write_atomically(path: Path, write) -> None:
    """Write through a temporary file beside `path`, then rename: a crash never leaves a half-written file
    under the real name. Temporaries a killed earlier write left behind are removed first. The file gets
    the permissions the user's umask gives, as open() would (not mkstemp's owner-only 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            try:
                write(f)
            except RuntimeError:  # torch.save's zip writer reports a failed write (full disk) this way
                raise OSError(f"{path}: could not be written (the disk is full, or a file size limit was hit)") from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    _write_atomically(Path(path), lambda f: torch.save({"format": CHECKPOINT_FORMAT, **payload}, f))


def write_text_atomically(path: Path | str, text: str) -> None:
    _write_atomically(Path(path), lambda f: f.write(text.encode()))


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load any checkpoint file (this project's or a foreign one) onto the CPU, tensors and plain data only."""
    path = Path(path)
    if problem := unreadable_file(path):
        raise CheckpointError(f"checkpoint {path}: {problem}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): a copy or download did not finish")
    damaged = CheckpointError(f"checkpoint {path} is damaged or truncated, or not a PyTorch file")
    try:
        with warnings.catch_warnings():  # garbage read as a pickle header names a random "protocol"
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        with path.open("rb") as f:
            header = f.read(2)
        # a disallowed global in a real PyTorch file (zip, or the legacy format's pickle header); garbage or a
        # text file starting with "c" also reads as a global to the unpickler
        if "global" not in str(e) or not (header == b"PK" or header[:1] == b"\x80"):
            raise damaged from None
        raise CheckpointError(
            f"checkpoint {path} holds Python objects besides tensors, which loading would have to execute; if you "
            f"trust its source, keep only its weights: python -c \"import torch; c = torch.load('{path}', "
            f"weights_only=False); torch.save({{'state_dict': c['state_dict']}}, 'weights_only.pt')\"") from None
    except MemoryError:
        raise
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EIO):  # the file system's fault, not the file's
            raise CheckpointError(f"checkpoint {path} cannot be read: {e.strerror}") from None
        raise damaged from None  # e.g. a truncated zip: seeking past its end (EINVAL)
    except Exception:  # the weights-only unpickler fails on garbage with any error (IndexError, KeyError, ...)
        raise damaged from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, expected a dict of weights")
    return checkpoint


def is_project_checkpoint(checkpoint: dict[str, Any]) -> bool:
    return checkpoint.get("format") == CHECKPOINT_FORMAT
