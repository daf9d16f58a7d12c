"""MixCLDehazeNet: MixDehazeNet conditioned on a language prior (github.com/DanielHo-BS/MixCLDehazeNet).

A text feature (CLIP's embedding of the image's zero-shot class, e.g. "a photo of a outdoor") is fused
with the image by a CALIP-style attention with learned 1×1 projections: every pixel attends over the D
scalars of the text vector. The result (3 channels) is concatenated to the image (or added to it) before
the MixDehazeNet backbone.
"""
from __future__ import annotations

import dataclasses
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.config import PriorConfig
from utils.image import pad_to_multiple

from .interface import DehazingNetwork
from .mixdehazenet import DEPTHS, MixDehazeNet, convert_official_state_dict
from .registry import register_model

FUSIONS = ("concat", "add")
ATTENTIONS = ("fused", "released")


class TextImageAttention(nn.Module):
    """Pixels (queries) attend over the D scalars of a text vector (keys and values).

    query = 1×1 conv 3→p on the image; key, value = 1×1 Conv1d 1→p over the length-D text sequence;
    out = softmax(Q Kᵀ / √p) V, projected p→3. `attention="fused"` computes it with scaled_dot_product_attention,
    which never materialises the HW×D attention matrix, so memory grows with HW alone; "released" multiplies and
    applies softmax explicitly, as the released code does (the same function, other rounding under autocast).
    """

    def __init__(self, image_channels: int = 3, dim: int = 5, attention: str = "fused"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.dim, self.attention = dim, attention
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
        if self.attention == "released":  # the B×HW×D matrix, as the release computes it
            weights = (query @ key.transpose(1, 2) / self.dim ** 0.5).softmax(dim=-1)
            return self.out_proj((weights @ value).transpose(1, 2).reshape(b, self.dim, h, w))
        # Fused kernels want the head size to be a multiple of 8: zero columns change neither Q·Kᵀ
        # nor the kept output columns.
        padded = -self.dim % 8
        query, key, value = (F.pad(t, (0, padded)) for t in (query, key, value))
        out = F.scaled_dot_product_attention(query[:, None], key[:, None], value[:, None], scale=self.dim ** -0.5)
        out = out[:, 0, :, : self.dim].transpose(1, 2).reshape(b, self.dim, h, w)
        return self.out_proj(out)


class MixCLDehazeNet(DehazingNetwork):
    """`net(x, text)`: x B×3×H×W in [-1, 1] (any size), text B×D or B×1×D text features.

    With `num_labels`, the prior is a learned embedding per known domain label instead of a CLIP text
    feature, and `text` holds B integer labels. `prior`: the language prior settings (utils.config.PriorConfig,
    as a dict) the network is trained and run with; the released MixCLDehazeNet's by default (CLIP ViT-B/32 with
    OpenAI weights, arg-max class of indoor/outdoor). Checkpoints store them with the other arguments, so a loaded
    network knows how its inputs get their prior (prior/network.py).
    """

    takes_prior = True
    size_multiple, min_size = MixDehazeNet.size_multiple, MixDehazeNet.min_size  # the backbone pads to these

    def __init__(self, depths: tuple[int, ...], text_dim: int = 512, fusion: str = "concat",
                 num_labels: int | None = None, prior: dict | None = None, attention: str = "fused"):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.prior = PriorConfig(**(prior or {"mode": "labels" if num_labels else "clip"}))
        if (self.prior.mode == "labels") != bool(num_labels) or self.prior.mode == "none":
            raise ValueError(f"prior mode {self.prior.mode!r} does not fit num_labels={num_labels}: the `labels` prior "
                             f"takes a learned embedding per class, the CLIP priors a text feature")
        if num_labels and num_labels != len(self.prior.classes):
            raise ValueError(f"num_labels={num_labels}, but the prior has {len(self.prior.classes)} classes")
        self.text_dim, self.fusion_mode = text_dim, fusion
        self.label_embedding = nn.Embedding(num_labels, text_dim) if num_labels else None
        self.fusion = TextImageAttention(attention=attention)
        self.backbone = MixDehazeNet(depths, in_chans=6 if fusion == "concat" else 3)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple, self.min_size)
        features = self.backbone.forward_features(self.stem_input(x.to(self.dtype), text))
        return self.backbone.apply_gain_bias(x, features)[..., :h, :w]  # in the input's dtype, as MixDehazeNet

    def example_prior(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Class indices for the `labels` prior, else unit-norm text features of the network's width."""
        if self.label_embedding is not None:
            return torch.randint(0, self.label_embedding.num_embeddings, (batch,), generator=generator)
        return F.normalize(torch.randn(batch, self.text_dim, generator=generator), dim=-1)

    def prior_settings(self) -> dict:
        """The prior settings as plain data, as the constructor takes them."""
        return dataclasses.asdict(self.prior)

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
            match = _RELEASED_KEY.match(key)
            if not match or match.group(1) not in _RELEASED_FUSION | _RELEASED_DEAD:
                raise KeyError(f"unknown parameter {key!r} in a released MixCLDehazeNet checkpoint")
            if match.group(1) in _RELEASED_FUSION:
                converted[f"fusion.{_RELEASED_FUSION[match.group(1)]}.{match.group(2)}"] = value
        backbone = convert_official_state_dict({k: v for k, v in state_dict.items() if not k.startswith("text_emb.")})
        return converted | {f"backbone.{k}": v for k, v in backbone.items()}


_RELEASED_KEY = re.compile(r"^text_emb\.(\w+)\.(weight|bias)$")
_RELEASED_FUSION = {"q1": "query", "k2": "key", "v2": "value", "postProj_s": "out_proj"}
_RELEASED_DEAD = {"k1": None, "v1": None, "q2": None, "postProj_t": None}


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
