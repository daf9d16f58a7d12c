"""Where pretrained weights come from. Nothing is downloaded behind a user's back on an offline machine:
a missing file stops the program at start-up with a message that says what to fetch and where to put it."""
from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "pretrained"


class MissingWeightsError(FileNotFoundError):
    pass


def torchvision_state_dict(weights, builder: str, local_file: Path | str | None = None) -> dict[str, torch.Tensor]:
    """ImageNet weights of a torchvision model (`weights`: e.g. ResNet152_Weights.IMAGENET1K_V1) from
    `local_file`, pretrained/<file name>, or torchvision's own cache ($TORCH_HOME/hub/checkpoints)."""
    filename = Path(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints" / filename
    candidates = [Path(local_file)] if local_file else [WEIGHTS_DIR / filename, cache]
    for path in candidates:
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
    raise MissingWeightsError(
        f"ImageNet weights for torchvision's {builder} not found (looked for {', '.join(map(str, candidates))}). "
        f"On a machine with internet access run\n"
        f"    python -c \"import torchvision; torchvision.models.{builder}(weights='{weights.name}')\"\n"
        f"and copy {cache} here, or download {weights.url} into {WEIGHTS_DIR}/.")
