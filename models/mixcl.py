"""MixCLDehazeNet: MixDehazeNet conditioned on a language prior (github.com/DanielHo-BS/MixCLDehazeNet).

A text feature (CLIP's embedding of the image's zero-shot class, e.g. "a photo of a outdoor") is fused
with the image by a CALIP-style attention with learned 1×1 projections: every pixel attends over the D
scalars of the text vector. The result (3 channels) is concatenated to the image (or added to it) before
the MixDehazeNet backbone.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.image import pad_to_multiple

from .mixdehazenet import DEPTHS, MixDehazeNet, convert_official_state_dict
from .registry import register_model

FUSIONS = ("concat", "add")


class TextImageAttention(nn.Module):
    """Pixels (queries) attend over the D scalars of a text vector (keys and values).

    query = 1×1 conv 3→p on the image; key, value = 1×1 Conv1d 1→p over the length-D text sequence;
    out = softmax(Q Kᵀ / √p) V, projected p→3. Computed by scaled_dot_product_attention, which never
    materialises the HW×D attention matrix, so memory grows with HW alone.
    """

    def __init__(self, image_channels: int = 3, dim: int = 5):
        super().__init__()
        self.dim = dim
        self.query = nn.Conv2d(image_channels, dim, 1)
        self.key = nn.Conv1d(1, dim, 1)
        self.value = nn.Conv1d(1, dim, 1)
        self.out_proj = nn.Conv2d(dim, image_channels, 1)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        text = text.reshape(b, 1, -1).to(image.dtype)
        query = self.query(image).flatten(2).transpose(1, 2)  # B×HW×p
        key = self.key(text).transpose(1, 2)                   # B×D×p
        value = self.value(text).transpose(1, 2)               # B×D×p
        # Fused kernels want the head size to be a multiple of 8: zero columns change neither Q·Kᵀ
        # nor the kept output columns.
        padded = -self.dim % 8
        query, key, value = (F.pad(t, (0, padded)) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query[:, None], key[:, None], value[:, None], scale=self.dim ** -0.5)
        out = out[:, 0, :, : self.dim].transpose(1, 2).reshape(b, self.dim, h, w)
        return self.out_proj(out)


class MixCLDehazeNet(nn.Module):
    """`net(x, text)`: x B×3×H×W in [-1, 1] (any size), text B×D or B×1×D text features.

    With `num_labels`, the prior is a learned embedding per known domain label instead of a CLIP text
    feature, and `text` holds B integer labels.
    """

    takes_prior = True  # scripts hand it the prior of each image (datasets/prior.py)
    size_multiple, min_size = MixDehazeNet.size_multiple, MixDehazeNet.min_size  # the backbone pads to these

    def __init__(self, depths: tuple[int, ...], text_dim: int = 512, fusion: str = "concat",
                 num_labels: int | None = None):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.fusion_mode = fusion
        self.label_embedding = nn.Embedding(num_labels, text_dim) if num_labels else None
        self.fusion = TextImageAttention()
        self.backbone = MixDehazeNet(depths, in_chans=6 if fusion == "concat" else 3)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple, self.min_size)
        return self.backbone.apply_gain_bias(x, self.backbone.forward_features(self.stem_input(x, text)))[..., :h, :w]

    def stem_input(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """What the backbone's stem takes: the (padded) image with the text-image attention's output
        concatenated (6 channels) or added (3)."""
        if self.label_embedding is not None:
            text = self.label_embedding(text)
        fused = self.fusion(x, text)
        return torch.cat([x, fused], dim=1) if self.fusion_mode == "concat" else x + fused

    @staticmethod
    def convert_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept the released MixCLDehazeNet layout (`text_emb.*` beside official MixDehazeNet names) as well
        as this project's. Its reverse text update (k1, v1, q2, postProj_t) is dead code there: dropped."""
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
        if not any(k.startswith("text_emb.") for k in state_dict):
            return state_dict
        converted = {}
        for key, value in state_dict.items():
            if not key.startswith("text_emb."):
                continue
            match = _SEED_KEY.match(key)
            if not match or match.group(1) not in _SEED_FUSION | _SEED_DEAD:
                raise KeyError(f"unknown parameter {key!r} in a seed MixCLDehazeNet checkpoint")
            if match.group(1) in _SEED_FUSION:
                converted[f"fusion.{_SEED_FUSION[match.group(1)]}.{match.group(2)}"] = value
        backbone = convert_official_state_dict({k: v for k, v in state_dict.items() if not k.startswith("text_emb.")})
        return converted | {f"backbone.{k}": v for k, v in backbone.items()}


_SEED_KEY = re.compile(r"^text_emb\.(\w+)\.(weight|bias)$")
_SEED_FUSION = {"q1": "query", "k2": "key", "v2": "value", "postProj_s": "out_proj"}
_SEED_DEAD = {"k1": None, "v1": None, "q2": None, "postProj_t": None}


@register_model
def mixcl_t(**kwargs) -> MixCLDehazeNet:
    return MixCLDehazeNet(DEPTHS["t"], **kwargs)


@register_model
def mixcl_s(**kwargs) -> MixCLDehazeNet:
    return MixCLDehazeNet(DEPTHS["s"], **kwargs)


@register_model
def mixcl_b(**kwargs) -> MixCLDehazeNet:
    return MixCLDehazeNet(DEPTHS["b"], **kwargs)


@register_model
def mixcl_l(**kwargs) -> MixCLDehazeNet:
    return MixCLDehazeNet(DEPTHS["l"], **kwargs)
