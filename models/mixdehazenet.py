"""MixDehazeNet (Lu et al., 2023): a U-shaped network of mix structure blocks.

Faithful to the official implementation (same operations, same parameter shapes, same numerics);
module names describe what each piece is, and `convert_official_state_dict` maps the official
checkpoint keys onto them.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from utils.image import pad_to_multiple

from .interface import DehazingNetwork
from .layers import DilatedDepthwiseConv2d, GlobalAvgPool, conv_gelu
from .registry import register_model

WIDTHS = (24, 48, 96, 48, 24)
DEPTHS = {
    "t": (1, 1, 2, 1, 1),
    "s": (2, 2, 4, 2, 2),
    "b": (4, 4, 8, 4, 4),
    "l": (8, 8, 16, 8, 8),
}


class ConvMlp(nn.Module):
    """Pointwise MLP on feature maps: 1×1 conv → GELU → 1×1 conv (the first two fused in CPU inference)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Conv2d(in_dim, hidden_dim, 1)
        self.fc2 = nn.Conv2d(hidden_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(conv_gelu(self.fc1, x))


class MultiScaleLargeKernel(nn.Module):
    """First half of a mix structure block: parallel dilated large kernels at three scales (residual)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.conv5x5 = nn.Conv2d(dim, dim, 5, padding=2, padding_mode="reflect")
        self.dilated7x7 = DilatedDepthwiseConv2d(dim, 7, dilation=3, padding_mode="reflect")
        self.dilated5x5 = DilatedDepthwiseConv2d(dim, 5, dilation=3, padding_mode="reflect")
        self.dilated3x3 = DilatedDepthwiseConv2d(dim, 3, dilation=3, padding_mode="reflect")
        self.mlp = ConvMlp(3 * dim, 4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv5x5(self.pointwise(self.norm(x)))
        y = torch.cat([self.dilated7x7(y), self.dilated5x5(y), self.dilated3x3(y)], dim=1)
        return x + self.mlp(y)


class ChannelAttention(nn.Module):
    """Per-channel gate from globally pooled features (B×C×1×1): 1×1 → GELU → 1×1 → sigmoid."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(dim, dim, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(pooled))))


class PixelAttention(nn.Module):
    """Per-pixel gate: 1×1 (dim → dim/8) → GELU → 1×1 (→ 1) → sigmoid."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, dim // 8, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(dim // 8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(x))))


class EnhancedParallelAttention(nn.Module):
    """Second half of a mix structure block: simple, channel and pixel attention in parallel (residual)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        # simple pixel attention: a value map gated by a global per-channel weight
        self.value_proj = nn.Conv2d(dim, dim, 1)
        self.value_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, padding_mode="reflect")
        self.value_gate = nn.Conv2d(dim, dim, 1)
        self.pool = GlobalAvgPool()  # one global statistic feeds both the value gate and the channel gate
        self.channel = ChannelAttention(dim)
        self.pixel = PixelAttention(dim)
        self.mlp = ConvMlp(3 * dim, 4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        pooled = self.pool(y)
        simple = self.value_dwconv(self.value_proj(y)) * torch.sigmoid(self.value_gate(pooled))
        y = torch.cat([simple, self.channel(pooled) * y, self.pixel(y) * y], dim=1)
        return x + self.mlp(y)


class MixStructureBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.multi_scale = MultiScaleLargeKernel(dim)
        self.attention = EnhancedParallelAttention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.multi_scale(x))


def _stage(dim: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*[MixStructureBlock(dim) for _ in range(depth)])


def _downsample(in_dim: int, out_dim: int) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1, padding_mode="reflect")


class PixelShuffleUpsample(nn.Module):
    """×2 upsampling: 1×1 conv to 4× the output channels, then pixel shuffle."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim * 4, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class SKFusion(nn.Module):
    """Selective-kernel fusion of two same-shaped maps: softmax weights over the two, per channel."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.reduce = nn.Conv2d(dim, hidden, 1, bias=False)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, 2 * dim, 1, bias=False)
        self.pool = GlobalAvgPool()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(a + b)
        weights = self.expand(self.act(self.reduce(pooled)))
        weights = weights.unflatten(1, (2, a.shape[1])).softmax(dim=1)
        return a * weights[:, 0] + b * weights[:, 1]


class MixDehazeNet(DehazingNetwork):
    """Input B×3×H×W in [-1, 1], any H, W; output the dehazed image, same shape and range.

    The network predicts a per-pixel gain K (1 channel) and bias (3 channels) and returns K·x − bias + x. It
    computes in its weights' dtype; K·x − bias + x in the input's (a bf16 copy adds its correction to the fp32
    photo, which bf16 would round by up to half an 8-bit level).
    """

    size_multiple = 4  # two stride-2 downsamplings
    # The dilated 7×7 convolutions reflect-pad by 9, so the H/4 map must exceed 9 pixels per side.
    min_size = 40

    def __init__(self, depths: tuple[int, ...], widths: tuple[int, ...] = WIDTHS, in_chans: int = 3):
        super().__init__()
        if widths[1] != widths[3] or widths[0] != widths[4]:
            raise ValueError(f"encoder and decoder widths must mirror each other, got {widths}")
        self.stem = nn.Conv2d(in_chans, widths[0], 3, padding=1, padding_mode="reflect")
        self.stage1 = _stage(widths[0], depths[0])
        self.down1 = _downsample(widths[0], widths[1])
        self.stage2 = _stage(widths[1], depths[1])
        self.down2 = _downsample(widths[1], widths[2])
        self.stage3 = _stage(widths[2], depths[2])
        self.up1 = PixelShuffleUpsample(widths[2], widths[3])
        self.skip2 = nn.Conv2d(widths[1], widths[1], 1)
        self.fusion1 = SKFusion(widths[3])
        self.stage4 = _stage(widths[3], depths[3])
        self.up2 = PixelShuffleUpsample(widths[3], widths[4])
        self.skip1 = nn.Conv2d(widths[0], widths[0], 1)
        self.fusion2 = SKFusion(widths[4])
        self.stage5 = _stage(widths[4], depths[4])
        self.head = nn.Conv2d(widths[4], 4, 3, padding=1, padding_mode="reflect")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Padded stem input → the 4-channel (gain, bias) map."""
        skip1 = self.stage1(self.stem(x))
        skip2 = self.stage2(self.down1(skip1))
        x = self.up1(self.stage3(self.down2(skip2)))
        x = self.fusion1(x, self.skip2(skip2)) + x
        x = self.up2(self.stage4(x))
        x = self.fusion2(x, self.skip1(skip1)) + x
        return self.head(self.stage5(x))

    @staticmethod
    def apply_gain_bias(x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        gain, bias = features.split((1, 3), dim=1)
        return gain * x - bias + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple, self.min_size)
        return self.apply_gain_bias(x, self.forward_features(x.to(self.dtype)))[..., :h, :w]

    @staticmethod
    def convert_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept official MixDehazeNet state dicts as well as this project's."""
        return convert_official_state_dict(state_dict) if is_official_state_dict(state_dict) else state_dict


@register_model
def mixdehazenet_t(**kwargs) -> MixDehazeNet:
    return MixDehazeNet(DEPTHS["t"], **kwargs)


@register_model
def mixdehazenet_s(**kwargs) -> MixDehazeNet:
    return MixDehazeNet(DEPTHS["s"], **kwargs)


@register_model
def mixdehazenet_b(**kwargs) -> MixDehazeNet:
    return MixDehazeNet(DEPTHS["b"], **kwargs)


@register_model
def mixdehazenet_l(**kwargs) -> MixDehazeNet:
    return MixDehazeNet(DEPTHS["l"], **kwargs)


# Official parameter names → this file's names. Top level first, then inside a mix structure block.
_OFFICIAL_TOP_LEVEL = [
    (r"^patch_embed\.proj\.", "stem."),
    (r"^layer(\d)\.blocks\.(\d+)\.", r"stage\1.\2."),
    (r"^patch_merge(\d)\.proj\.", r"down\1."),
    (r"^patch_split(\d)\.proj\.0\.", r"up\1.conv."),
    (r"^fusion(\d)\.mlp\.0\.", r"fusion\1.reduce."),
    (r"^fusion(\d)\.mlp\.2\.", r"fusion\1.expand."),
    (r"^patch_unembed\.proj\.0\.", "head."),
]
_OFFICIAL_BLOCK = {
    "norm1": "multi_scale.norm",
    "conv1": "multi_scale.pointwise",
    "conv2": "multi_scale.conv5x5",
    "conv3_19": "multi_scale.dilated7x7",
    "conv3_13": "multi_scale.dilated5x5",
    "conv3_7": "multi_scale.dilated3x3",
    "mlp.0": "multi_scale.mlp.fc1",
    "mlp.2": "multi_scale.mlp.fc2",
    "norm2": "attention.norm",
    "Wv.0": "attention.value_proj",
    "Wv.1": "attention.value_dwconv",
    "Wg.1": "attention.value_gate",
    "ca.1": "attention.channel.fc1",
    "ca.3": "attention.channel.fc2",
    "pa.0": "attention.pixel.fc1",
    "pa.2": "attention.pixel.fc2",
    "mlp2.0": "attention.mlp.fc1",
    "mlp2.2": "attention.mlp.fc2",
}
_BLOCK_KEY = re.compile(r"^(stage\d\.\d+)\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def is_official_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.removeprefix("module.").startswith("patch_embed.proj.") for k in state_dict)


def convert_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of an official MixDehazeNet state dict (with or without `module.`) to this project's."""
    converted = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        for pattern, replacement in _OFFICIAL_TOP_LEVEL:
            key = re.sub(pattern, replacement, key)
        match = _BLOCK_KEY.match(key)
        if match:
            prefix, module, tensor = match.groups()
            if module not in _OFFICIAL_BLOCK:
                raise KeyError(f"unknown parameter {key!r} in an official MixDehazeNet checkpoint")
            key = f"{prefix}.{_OFFICIAL_BLOCK[module]}.{tensor}"
        converted[key] = value
    return converted
