"""Pretrained networks as Hugging Face model folders: `config.json` (the registered name and the constructor
arguments, a MixCL network's prior settings among them), `model.safetensors` (the weights, no pickle) and a model
card, `README.md`. `from_pretrained` loads such a folder, or a Hub repository through huggingface_hub's cache (so a
downloaded repository also loads offline; models.build.from_pretrained builds the network); scripts/export_pretrained.py
writes and pushes them.
"""
from __future__ import annotations

import errno
import json
import re
import socket
from pathlib import Path
from typing import Any

import huggingface_hub
import safetensors
import safetensors.torch
import torch

from utils.checkpoint import CheckpointError

from .interface import DehazingNetwork
from .registry import stored_model
from .weights import server_reachable

PRETRAINED_FORMAT = "mixcl-dehaze-pretrained/1"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
PRETRAINED_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # a Hugging Face repository id: ORG/NAME
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pk", ".pkl", ".ckpt", ".bin", ".safetensors")


def save_pretrained(model: DehazingNetwork, arguments: dict[str, Any], folder: Path | str) -> None:
    """config.json and model.safetensors of `model` (built as `create_model(model.model_name, **arguments)`)."""
    folder = Path(folder)
    config = {"format": PRETRAINED_FORMAT, "model_name": model.model_name, "model_args": arguments}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(weights, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def is_pretrained_reference(source: Path | str) -> bool:
    """Whether `source` names a model folder (holding config.json) or a Hub repository id ("org/name"), rather
    than a checkpoint file."""
    path = Path(source)
    if path.is_dir():
        return True
    return not path.exists() and bool(REPO_ID.match(str(source))) and path.suffix.lower() not in _CHECKPOINT_SUFFIXES


def pretrained_folder(source: Path | str) -> Path:
    """The local folder of a model folder or Hub repository (downloaded into huggingface_hub's cache once; a
    cached repository is used without the network)."""
    path = Path(source)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path} is a folder without {CONFIG_FILE}: not a model folder of this project "
                                  f"(scripts/export_pretrained.py writes them)")
        return path
    repo_id = str(source)
    cached = [huggingface_hub.try_to_load_from_cache(repo_id, name) for name in (CONFIG_FILE, WEIGHTS_FILE)]
    if all(isinstance(c, str) for c in cached):
        return Path(cached[0]).parent
    if huggingface_hub.constants.HF_HUB_OFFLINE or not server_reachable(huggingface_hub.constants.ENDPOINT):
        raise CheckpointError(f"{repo_id}: neither a file nor a folder here, and as a Hugging Face repository it is not "
                              f"in the cache and the hub cannot be reached")
    try:
        downloaded = [huggingface_hub.hf_hub_download(repo_id, name) for name in (CONFIG_FILE, WEIGHTS_FILE)]
    except Exception as e:  # whatever the client raises: hub_problem says what it means
        raise CheckpointError(f"{repo_id}: cannot be fetched from the Hugging Face hub: {hub_problem(e)}") from None
    return Path(downloaded[0]).parent


NOT_LOGGED_IN = "not logged in (log in with `hf auth login`, or set HF_TOKEN)"
_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN)  # with refused, reset, timed out, no DNS answer


def hub_problem(error: BaseException) -> str:
    """Why a request to the Hugging Face hub failed, in a few words: no network, not logged in, refused (401, 403),
    missing (404) or a server error (5xx), read from the error and the errors it arose from."""
    for cause in _causes(error):
        if isinstance(cause, huggingface_hub.errors.OfflineModeIsEnabled):
            return "offline mode is on (HF_HUB_OFFLINE)"
        if isinstance(cause, huggingface_hub.errors.LocalTokenNotFoundError):
            return NOT_LOGGED_IN
        if getattr(cause, "response", None) is not None:
            return _refusal(cause.response.status_code, cause)
        if isinstance(cause, ConnectionError | TimeoutError | socket.gaierror) or (
                isinstance(cause, OSError) and cause.errno in _UNREACHABLE):
            return f"no network: {huggingface_hub.constants.ENDPOINT} cannot be reached ({cause.strerror or cause})"
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _refusal(status: int, error: BaseException) -> str:
    if status == 401:
        return NOT_LOGGED_IN if huggingface_hub.get_token() is None else (
            "refused (401: the hub does not accept this machine's token; log in again with `hf auth login`)")
    if status == 403:
        return "refused (403: this account has no access to it)"
    if status == 404:
        what = ("the repository lacks the file: not a model folder of this project"
                if isinstance(error, huggingface_hub.errors.RemoteEntryNotFoundError)
                else "no such repository, or a private one this account cannot see")
        return f"missing (404: {what})"
    if status >= 500:
        return f"server error ({status}): the hub failed to answer; try again later"
    return f"refused ({status})"


def _causes(error: BaseException | None):
    """The error, then the one it was raised from (or during), and so on."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def read_pretrained_config(folder: Path) -> tuple[str, dict]:
    """(registered name, constructor arguments) of a model folder's config.json, checked."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(config, dict) or config.get("format") != PRETRAINED_FORMAT:
        raise CheckpointError(f"{path}: not a model config of this project (format {PRETRAINED_FORMAT!r} expected)")
    return stored_model(config.get("model_name"), config.get("model_args", {}), path)


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """name → shape of every tensor of a safetensors file, read from its header alone: nothing is loaded."""
    try:
        with safetensors.safe_open(str(path), "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (OSError, safetensors.SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot be read as safetensors weights ({e})") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except (OSError, safetensors.SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot be read as safetensors weights ({e})") from None
