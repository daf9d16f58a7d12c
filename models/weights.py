"""Where pretrained weights come from. A file already on this machine is used; otherwise the library's own
download runs (torchvision's for ImageNet weights, open_clip's / Hugging Face's for CLIP) when its server
answers. On an offline machine the program stops at start-up with a message naming the file it needs and
where to put it, instead of retrying downloads."""
from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from utils.cli import UserError
from utils.paths import unreadable_file

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "pretrained"


class MissingWeightsError(UserError, FileNotFoundError):
    pass


def server_reachable(url: str, timeout: float = 3.0) -> bool:
    """One quick connection attempt to the server of `url`, so that an offline machine fails at once."""
    parts = urlparse(url)
    try:
        socket.create_connection((parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)), timeout=timeout).close()
        return True
    except OSError:
        return False


def torchvision_state_dict(weights, builder: str, local_file: Path | str | None = None) -> dict[str, torch.Tensor]:
    """ImageNet weights of a torchvision model (`weights`: e.g. ResNet152_Weights.IMAGENET1K_V1, the weights
    `resnet152(pretrained=True)` means) from `local_file`, pretrained/<file name> or torchvision's cache
    ($TORCH_HOME/hub/checkpoints); downloaded into that cache by torchvision when its server answers."""
    filename = Path(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if local_file:
        if problem := unreadable_file(local_file):
            raise MissingWeightsError(f"weights file {local_file} (ImageNet {builder}): {problem}")
        return torch.load(local_file, map_location="cpu", weights_only=True)
    for path in (WEIGHTS_DIR / filename, cache):
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
    if server_reachable(weights.url):
        return weights.get_state_dict(progress=True, check_hash=True)
    raise MissingWeightsError(
        f"ImageNet weights for torchvision's {builder} ({filename}) are not on this machine and {weights.url} "
        f"cannot be reached. On a machine with internet access run\n"
        f"    python -c \"import torchvision; torchvision.models.{builder}(weights='{weights.name}')\"\n"
        f"and copy {cache} to the same place here, or download {weights.url} into {WEIGHTS_DIR}/.")
