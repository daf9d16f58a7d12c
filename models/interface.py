"""What every network of this project declares. Scripts, tiling, the ONNX export, the config checks and the
benchmarks ask the network through this interface instead of probing its attributes."""
from __future__ import annotations

import torch
import torch.nn as nn


class DehazingNetwork(nn.Module):
    """`net(x)` (or `net(x, prior)` when `takes_prior`): x B×3×H×W in [-1, 1], any size; output of the same shape
    and range. The network pads its input to its size rule itself and crops the output back."""

    model_name: str = ""                  # the registered name, set by models.registry.create_model
    takes_prior: bool = False             # forward(x, prior): a language prior per image (MixCL)
    returns_global_feature: bool = False  # forward(x, return_global=True) → (image, z) (KA-Net's reweighting)
    size_multiple: int = 1                # the input is padded to a multiple of this ...
    min_size: int = 1                     # ... and to at least this many pixels per side

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights: the network computes in it (a bf16 copy in bf16) and returns the input's."""
        return next(self.parameters()).dtype

    def size_rule(self) -> tuple[int, int]:
        """(size multiple, minimum size) the network pads its input to (reflect, right and bottom)."""
        return self.size_multiple, self.min_size

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A foreign checkpoint's state dict (an official release's layout) in this project's names; a family
        whose releases name their weights differently overrides it."""
        return state_dict

    def example_prior(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """A random prior of the kind forward takes, or None for networks that take none."""
        return None

    def example_inputs(self, batch: int, height: int, width: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Random inputs forward takes: the image in [-1, 1], and a prior when the network takes one."""
        image = torch.rand(batch, 3, height, width, generator=generator) * 2 - 1
        prior = self.example_prior(batch, generator)
        return (image,) if prior is None else (image, prior)
