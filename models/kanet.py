"""KA-Net (Feng et al., "Advancing Real-World Image Dehazing: Perspective, Modules, and Training", TPAMI 2024).

The released network, as SPEC section 5 describes it:

    image ─ HierarchicalEncoder (TransWeather: 4 transformer stages + intra-patch branches)
          ─ LocalizationRemoval on the H/32 map (random-Fourier, dilated and attention branches, gated)
          ─ TaskQueryDecoder (TransWeather: learnable weather/haze queries attend to the H/64 tokens)
          ─ ConvTail (transposed convs ×2 per step, residual blocks, encoder skips) ─ 3×3 conv ─ tanh

Input and output are in [-1, 1]; any size works (reflect-pad to a multiple of 16, crop back). Two
departures from the released code: the random Fourier projection is drawn once and kept as buffers (the
release redraws it at every forward pass, so its outputs are random even at test time), and two modules the
release builds but never calls are left out (`mini_patch_embed4`, a 3×3 conv 64→512 with its LayerNorm, and
`convproj.conv_output`, a 3×3 conv 8→3: 296,667 parameters).

Parameters: 58.61M against the reference's "about 55.7M". The TransWeather parts (encoder 15.96M, decoder
11.95M, tail 9.84M) follow the released code shape for shape; the difference, about 3M, lies in the
bottleneck (20.86M here), whose branch internals (attention unit, fuse widths) SPEC section 5 describes
only in prose.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from utils.image import pad_to_multiple

from .layers import GlobalAvgPool
from .registry import register_model

def _init_transformer_weights(module: nn.Module) -> None:
    """TransWeather's initialisation for its transformer parts."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def tokens_to_map(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×HW×C tokens → B×C×H×W."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *size)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×HW×C tokens."""
    return x.flatten(2).transpose(1, 2)


# --- transformer pieces (TransWeather / SegFormer) ---------------------------------------------------------

class OverlapPatchEmbed(nn.Module):
    """Strided conv with half-kernel padding (neighbouring patches overlap), then LayerNorm over channels."""

    def __init__(self, in_dim: int, dim: int, kernel_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, dim, kernel_size, stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return tokens_to_map(self.norm(map_to_tokens(x)), x.shape[-2:])


class ConvFeedForward(nn.Module):
    """Linear → depthwise 3×3 (positional information) → GELU → Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.dwconv(tokens_to_map(self.fc1(tokens), size))
        return self.fc2(self.act(map_to_tokens(x)))


class SpatialReductionAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from the map downsampled `sr_ratio` times."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reduction = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else None
        self.reduction_norm = nn.LayerNorm(dim) if sr_ratio > 1 else None

    def heads(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        return tokens.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def keys_values(self, tokens: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reduction is not None:
            tokens = self.reduction_norm(map_to_tokens(self.reduction(tokens_to_map(tokens, size))))
        return tuple(self.heads(t) for t in self.kv(tokens).chunk(2, dim=-1))

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(query, key, value)  # scale 1/√head_dim, as released
        return self.proj(out.transpose(1, 2).flatten(2))

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.attend(self.heads(self.q(tokens)), *self.keys_values(tokens, size))


class TaskQueryAttention(SpatialReductionAttention):
    """Attention whose queries are learned task queries (TransWeather) instead of the tokens.

    As released, the Q queries are stretched to the N tokens by nearest-neighbour resampling along the query
    axis, so the output is again one vector per token (a spatial map the convolutional tail can decode).
    """

    def __init__(self, dim: int, num_heads: int, num_queries: int):
        super().__init__(dim, num_heads)
        self.task_queries = nn.Parameter(torch.randn(1, num_queries, dim))

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        key, value = self.keys_values(tokens, size)
        query = self.heads(self.q(self.task_queries)).expand(tokens.shape[0], -1, -1, -1)
        query = F.interpolate(query, size=value.shape[-2:], mode="nearest")
        return self.attend(query, key, value)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + feed-forward(norm(x)), with stochastic depth."""

    def __init__(self, dim: int, attention: nn.Module, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attention
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ConvFeedForward(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens), size))
        return tokens + self.drop_path(self.mlp(self.norm2(tokens), size))


class TransformerStage(nn.Module):
    """Overlapping patch embedding, transformer blocks, LayerNorm; maps in and out."""

    def __init__(self, embed: OverlapPatchEmbed, blocks: list[TransformerBlock], dim: int):
        super().__init__()
        self.embed = embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        tokens = map_to_tokens(x)
        for block in self.blocks:
            tokens = block(tokens, size)
        return tokens_to_map(self.norm(tokens), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(self.embed(x))


class HierarchicalEncoder(nn.Module):
    """TransWeather's encoder: four transformer stages (H/4 … H/32). Each of the first three stages also
    feeds an intra-patch branch (stride-2 embedding + one block) whose output is added to the next stage's
    embedded input, so the next stage also sees finer, within-patch detail."""

    def __init__(self, dims: tuple[int, ...], depths: tuple[int, ...], num_heads: tuple[int, ...],
                 sr_ratios: tuple[int, ...], intra_heads: tuple[int, ...], mlp_ratio: float, drop_path_rate: float):
        super().__init__()
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stage_start = [sum(depths[:i]) for i in range(len(depths))]
        in_dims = (3, *dims[:-1])
        self.stages = nn.ModuleList(
            TransformerStage(
                OverlapPatchEmbed(in_dims[i], dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2),
                [TransformerBlock(dims[i], SpatialReductionAttention(dims[i], num_heads[i], sr_ratios[i]), mlp_ratio,
                                  drop_rates[stage_start[i] + j]) for j in range(depths[i])],
                dims[i])
            for i in range(len(dims)))
        # branch i works at stage i+1's resolution and width, with stage i's reduction ratio
        self.intra_patch = nn.ModuleList(
            TransformerStage(
                OverlapPatchEmbed(dims[i], dims[i + 1], 3, 2),
                [TransformerBlock(dims[i + 1], SpatialReductionAttention(dims[i + 1], intra_heads[i], sr_ratios[i]),
                                  mlp_ratio, drop_rates[stage_start[i]])],
                dims[i + 1])
            for i in range(len(dims) - 1))
        self.apply(_init_transformer_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features, intra = [], None
        for i, stage in enumerate(self.stages):
            x = stage.embed(x)
            if intra is not None:
                x = x + intra
            if i < len(self.intra_patch):
                intra = self.intra_patch[i](x)
            x = stage.run_blocks(x)
            features.append(x)
        return features


class TaskQueryDecoder(nn.Module):
    """TransWeather's decoder: stride-2 patch embedding of the deepest map, then blocks whose attention
    queries are learned task queries."""

    def __init__(self, dim: int, depth: int, num_heads: int, num_queries: int, mlp_ratio: float,
                 drop_rates: list[float]):
        super().__init__()
        blocks = [TransformerBlock(dim, TaskQueryAttention(dim, num_heads, num_queries), mlp_ratio, drop_rates[i])
                  for i in range(depth)]
        self.stage = TransformerStage(OverlapPatchEmbed(dim, dim, 3, 2), blocks, dim)
        self.apply(_init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x)


# --- localization and removal (KA-Net's bottleneck) ------------------------------------------------------

def conv_bn_relu(in_dim: int, out_dim: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation),
                         nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True))


class SpatialChannelAttention(nn.Module):
    """Channel gate (GAP → 1×1 → ReLU → 1×1 → sigmoid) followed by a spatial gate (7×7 conv over the
    channel-mean and channel-max maps → sigmoid): where and what to keep."""

    def __init__(self, dim: int, reduction: int = 16):
        super().__init__()
        self.channel = nn.Sequential(GlobalAvgPool(), nn.Conv2d(dim, dim // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(dim // reduction, dim, 1), nn.Sigmoid())
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1))


class DilatedAttentionBranch(nn.Module):
    """Two dilated 3×3 conv-BN-ReLU, both outputs concatenated and fused by a 1×1 conv, spatial+channel
    attention, plus the input."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.conv1 = conv_bn_relu(dim, dim, dilation=dilation)
        self.conv2 = conv_bn_relu(dim, dim, dilation=dilation)
        self.fuse = nn.Conv2d(2 * dim, dim, 1)
        self.attention = SpatialChannelAttention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.conv1(x)
        y2 = self.conv2(y1)
        return x + self.attention(self.fuse(torch.cat([y1, y2], dim=1)))


class RandomFourierFeatures(nn.Module):
    """sqrt(2/D)·cos(W f + b) per pixel, with f a 1×1 conv-BN-ReLU projection (dim → `in_dim`) and a fixed
    random W ~ N(0, 1) (D×in_dim), b ~ U(0, 2π): a random-feature view of the haze features that the
    localization branch works on. W and b are buffers: drawn once, saved in checkpoints."""

    def __init__(self, dim: int, in_dim: int):
        super().__init__()
        self.project = conv_bn_relu(dim, in_dim, kernel_size=1)
        self.register_buffer("weight", torch.randn(dim, in_dim, 1, 1))
        self.register_buffer("bias", torch.rand(dim) * 2 * math.pi)
        self.scale = math.sqrt(2.0 / dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.cos(F.conv2d(self.project(x), self.weight, self.bias))


class BranchGate(nn.Module):
    """One weight per branch and image: each branch's mean activation → Linear → ReLU → Linear → sigmoid."""

    def __init__(self, num_branches: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_branches, num_branches), nn.ReLU(inplace=True),
                                 nn.Linear(num_branches, num_branches), nn.Sigmoid())
        self.pool = GlobalAvgPool()

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        pooled = torch.stack([self.pool(b).mean((1, 2, 3)) for b in branches], dim=1)  # B×branches
        weights = self.mlp(pooled)
        return sum(weights[:, i, None, None, None] * b for i, b in enumerate(branches))


class LocalizationRemoval(nn.Module):
    """KA-Net's bottleneck on the deepest map: a conv residual, a conv, then three gated branches
    (random-Fourier features at dilation 1, raw features at dilations 3 and 5), 1×1 conv-BN-ReLU, plus
    the branch block's input."""

    def __init__(self, dim: int, fourier_dim: int = 64, dilations: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.residual_conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.fourier = RandomFourierFeatures(dim, fourier_dim)
        self.branches = nn.ModuleList(DilatedAttentionBranch(dim, d) for d in dilations)
        self.gate = BranchGate(len(dilations))
        self.out = conv_bn_relu(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + F.relu(self.residual_conv(x))
        x = self.conv(x)
        inputs = [self.fourier(x)] + [x] * (len(self.branches) - 1)
        fused = self.gate([branch(inp) for branch, inp in zip(self.branches, inputs)])
        return x + self.out(fused)


# --- convolutional tail ---------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """x + 0.1·conv(ReLU(conv(x))) (the residual is scaled down, as released)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.conv2(F.relu(self.conv1(x)))


def upsample2x(in_dim: int, out_dim: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_dim, out_dim, 4, stride=2, padding=1)


def crop_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Drop the extra row/column a ×2 upsampling makes when the encoder map had an odd size."""
    return x[..., : reference.shape[-2], : reference.shape[-1]]


class ConvTail(nn.Module):
    """From the decoder's H/64 map back to full resolution, adding the encoder maps on the way."""

    def __init__(self, dims: tuple[int, ...], out_dims: tuple[int, int] = (16, 8)):
        super().__init__()
        d1, d2, d3, d4 = dims
        self.up32 = upsample2x(d4, d4)
        self.up16 = upsample2x(d4, d3)
        self.refine16 = ResidualBlock(d3)
        self.up8 = upsample2x(d3, d2)
        self.refine8 = ResidualBlock(d2)
        self.up4 = upsample2x(d2, d1)
        self.refine4 = ResidualBlock(d1)
        self.up2 = upsample2x(d1, out_dims[0])
        self.refine2 = ResidualBlock(out_dims[0])
        self.up1 = upsample2x(out_dims[0], out_dims[1])
        self.head = nn.Conv2d(out_dims[1], 3, 3, padding=1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        s4, s8, s16, s32 = skips
        x = crop_to(self.up32(x), s32) + s32
        x = crop_to(self.up16(x), s16)
        x = self.up8(self.refine16(x) + s16)
        x = self.up4(self.refine8(x) + s8)
        x = self.up2(self.refine4(x) + s4)
        x = self.up1(self.refine2(x))
        return torch.tanh(self.head(x))


class KANet(nn.Module):
    """`net(x)`: x B×3×H×W in [-1, 1], any size → dehazed image in [-1, 1].
    `net(x, return_global=True)` → (image, z), z the B×C global average of the bottleneck map, which the
    sample-reweighting loss decorrelates (utils/reweighting.py)."""

    returns_global_feature = True  # forward(x, return_global=True), for the sample-reweighting loss
    size_multiple = 16  # the authors' test script crops to multiples of 16
    min_size = 64       # the deepest maps must stay at least 2×2 for the spatial-reduction attention

    def __init__(self, dims: tuple[int, ...] = (64, 128, 320, 512), depths: tuple[int, ...] = (2, 2, 2, 2),
                 num_heads: tuple[int, ...] = (1, 2, 4, 4), sr_ratios: tuple[int, ...] = (4, 2, 2, 1),
                 intra_heads: tuple[int, ...] = (1, 2, 2), mlp_ratio: float = 2.0, drop_path_rate: float = 0.1,
                 decoder_depth: int = 3, decoder_heads: int = 8, decoder_mlp_ratio: float = 4.0,
                 num_queries: int = 48, fourier_dim: int = 64, tail_dims: tuple[int, int] = (16, 8)):
        super().__init__()
        self.encoder = HierarchicalEncoder(dims, depths, num_heads, sr_ratios, intra_heads, mlp_ratio, drop_path_rate)
        self.bottleneck = LocalizationRemoval(dims[-1], fourier_dim)
        # TransWeather's decoder takes its drop-path rates from a 16-block schedule (its `depths=[3, 4, 6, 3]`)
        decoder_drop_rates = torch.linspace(0, drop_path_rate, 16).tolist()
        self.decoder = TaskQueryDecoder(dims[-1], decoder_depth, decoder_heads, num_queries, decoder_mlp_ratio,
                                        decoder_drop_rates)
        self.tail = ConvTail(dims, tail_dims)

    def forward(self, x: torch.Tensor, return_global: bool = False):
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple, self.min_size)
        *skips, deepest = self.encoder(x)
        deepest = self.bottleneck(deepest)
        out = self.tail(self.decoder(deepest), [*skips, deepest])[..., :h, :w]
        return (out, deepest.mean((2, 3))) if return_global else out


@register_model
def ka_net(**kwargs) -> KANet:
    return KANet(**kwargs)


@register_model
def ka_net_tiny(**kwargs) -> KANet:
    """Width- and depth-scaled KA-Net for CPU tests and demos (same structure, 0.9M parameters)."""
    return KANet(**{"dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "decoder_depth": 1,
                    "fourier_dim": 16, "tail_dims": (8, 8)} | kwargs)
