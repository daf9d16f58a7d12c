"""KA-Net (Feng et al., "Advancing Real-World Image Dehazing: Perspective, Modules, and Training", TPAMI 2024).

The released network (github.com/fyxnl/KA_Net, `testcode/LD_model1.py`, `Dehaze(3, 3)`), part for part:

    image ─ HierarchicalEncoder (TransWeather) ─┬─ z = GAP(deepest map)              (for sample reweighting)
                                                 ├─ deepest map ─ LocalizationRemoval ─ TaskQueryDecoder ─┐
                                                 └─ maps H/4 … H/32 (before the bottleneck) ─────── ConvTail
                                                                     ConvTail ─ reflect-padded 3×3 conv ─ tanh

55,360,759 parameters: encoder 15,961,856, bottleneck 23,320,804, decoder 11,954,176, tail 4,123,704, head 219.
Official checkpoints (`{'model': state_dict}` of `nn.DataParallel(Dehaze(3, 3))`) load directly: see
`convert_official_state_dict`. Input and output are in [-1, 1]. What differs from the release, on purpose:

- The random Fourier projection (W, b) is drawn once, from `fourier_seed` exactly as the release draws it
  (`torch.randn(512, 64)`, then `uniform_(0, 2π)` on 512 values), and kept as buffers saved with the weights.
  The release redraws it at every forward pass, test time included, so its outputs are random; official
  checkpoints do not hold it. `set_fourier_projection(W, b)` installs any draw.
- Any input size: reflect-padded to a multiple of 16 (at least 48, the smallest size the released network
  runs at) and cropped back. The authors' test script crops inputs to multiples of 16 instead.
- Two modules the release builds but never calls are left out (`Tencoder.mini_patch_embed4` and
  `convtail.conv_output`, 296,667 parameters); their keys in an official checkpoint are ignored by name.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from utils.image import pad_to_multiple

from .interface import DehazingNetwork
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
        drop_rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also when built on "meta"
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


# --- localization and removal (KA-Net's bottleneck, the release's `DehazeBlock`) ---------------------------

def conv_bn_relu(in_dim: int, out_dim: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation),
                         nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True))


class ChannelAttention(nn.Module):
    """`SELayer`: x · sigmoid(global · local), the global descriptor an MLP of the pooled channels and the
    local one two 3×3 convolutions through dim/`reduction` channels (no biases in either)."""

    def __init__(self, dim: int, reduction: int = 16):
        super().__init__()
        hidden = dim // reduction
        self.pool = GlobalAvgPool()
        self.fc = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(hidden, dim, bias=False))
        self.local = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                   nn.Conv2d(hidden, dim, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = self.fc(self.pool(x).flatten(1))[:, :, None, None]
        return x * torch.sigmoid(descriptor * self.local(x))


class SpatialAttention(nn.Module):
    """`SAM_cat`: x · sigmoid(1×1 → ReLU → 1×1 over [channel mean, 1×1 projection to one map])."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Conv2d(dim, 1, 1)
        self.gate = nn.Sequential(nn.Conv2d(2, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(1, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(torch.cat([x.mean(1, keepdim=True), self.project(x)], dim=1))


class ParallelAttention(nn.Module):
    """`SSB`: channel and spatial attention side by side, concatenated, fused by 1×1 conv-BN-ReLU."""

    def __init__(self, dim: int):
        super().__init__()
        self.channel = ChannelAttention(dim)
        self.spatial = SpatialAttention(dim)
        self.fuse = conv_bn_relu(2 * dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.channel(x), self.spatial(x)], dim=1))


class DilatedAttentionBranch(nn.Module):
    """`DFconvResBlock`: two dilated 3×3 conv-BN-ReLU in a row, both outputs concatenated and fused by 1×1
    conv-BN-ReLU, parallel attention, plus the input."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.conv1 = conv_bn_relu(dim, dim, dilation=dilation)
        self.conv2 = conv_bn_relu(dim, dim, dilation=dilation)
        self.fuse = conv_bn_relu(2 * dim, dim, kernel_size=1)
        self.attention = ParallelAttention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        return x + self.attention(self.fuse(torch.cat([y, self.conv2(y)], dim=1)))


def draw_fourier_projection(dim: int, in_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W ~ N(0, 1) (dim×in_dim), then b ~ U(0, 2π) (dim), in the release's order: with `torch.manual_seed(seed)`
    before its forward pass, the release draws exactly these."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(dim, in_dim, generator=generator)
    return weight, torch.empty(dim).uniform_(0, 2 * math.pi, generator=generator)


class RandomFourierFeatures(nn.Module):
    """sqrt(2/dim)·cos(W f + b) at every pixel, f a 1×1 conv-BN-ReLU projection to dim/8 channels (`faix`):
    a random-feature view of the haze features that the localization branch works on."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        self.project = conv_bn_relu(dim, dim // 8, kernel_size=1)
        weight, bias = draw_fourier_projection(dim, dim // 8, seed)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.scale = math.sqrt(2.0 / dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.cos(F.conv2d(self.project(x), self.weight[:, :, None, None], self.bias))


class BranchGate(nn.Module):
    """`AGB_mean`: one weight per branch and image (each branch's mean activation → Linear → ReLU → Linear →
    sigmoid, no biases), the weighted sum of the branches, then 1×1 conv-BN-ReLU."""

    def __init__(self, dim: int, num_branches: int):
        super().__init__()
        self.pool = GlobalAvgPool()
        self.mlp = nn.Sequential(nn.Linear(num_branches, num_branches, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(num_branches, num_branches, bias=False), nn.Sigmoid())
        self.out = conv_bn_relu(dim, dim, kernel_size=1)

    def forward(self, branches: list[torch.Tensor]) -> torch.Tensor:
        pooled = torch.cat([self.pool(b.mean(1, keepdim=True)) for b in branches], dim=1).flatten(1)  # B×branches
        weights = self.mlp(pooled)
        return self.out(sum(weights[:, i, None, None, None] * b for i, b in enumerate(branches)))


class MultiReceptiveField(nn.Module):
    """`MRFEB1`: random-Fourier features through a dilation-1 branch, the raw features through dilation-3 and
    dilation-5 branches, gated and summed, plus the input."""

    def __init__(self, dim: int, fourier_seed: int, dilations: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.fourier = RandomFourierFeatures(dim, fourier_seed)
        self.branches = nn.ModuleList(DilatedAttentionBranch(dim, d) for d in dilations)
        self.gate = BranchGate(dim, len(dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = [self.fourier(x)] + [x] * (len(self.branches) - 1)
        return x + self.gate([branch(inp) for branch, inp in zip(self.branches, inputs)])


class LocalizationRemoval(nn.Module):
    """KA-Net's bottleneck on the deepest map x: r = conv(ReLU(conv(x)) + x), the multi-receptive-field
    block on r, plus x."""

    def __init__(self, dim: int, fourier_seed: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)
        self.receptive_fields = MultiReceptiveField(dim, fourier_seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(F.relu(self.conv1(x)) + x)
        return self.receptive_fields(r) + x


# --- convolutional tail (TransWeather's `convprojection`) ------------------------------------------------

class ResidualBlock(nn.Module):
    """x + conv(ReLU(conv(x))) (the release has the 0.1 scaling of the residual commented out)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def upsample2x(in_dim: int, out_dim: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_dim, out_dim, 2, stride=2)


def crop_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Drop the extra row/column a ×2 upsampling makes when the encoder map had an odd size."""
    return x[..., : reference.shape[-2], : reference.shape[-1]]


class ConvTail(nn.Module):
    """From the decoder's H/64 map back to full resolution (`out_dims[1]` channels), adding the encoder maps
    on the way."""

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

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        s4, s8, s16, s32 = skips
        x = crop_to(self.up32(x), s32) + s32
        x = crop_to(self.up16(x), s16)
        x = self.up8(self.refine16(x) + s16)
        x = self.up4(self.refine8(x) + s8)
        x = self.up2(self.refine4(x) + s4)
        return self.up1(self.refine2(x))


class KANet(DehazingNetwork):
    """`net(x)`: x B×3×H×W in [-1, 1], any size → dehazed image in [-1, 1].
    `net(x, return_global=True)` → (image, z), z the B×C global average of the encoder's deepest map (before
    the bottleneck), which the sample-reweighting loss decorrelates (losses/reweighting.py)."""

    returns_global_feature = True  # forward(x, return_global=True), for the sample-reweighting loss
    size_multiple = 16  # four stride-2 stages after the stride-4 embedding keep the tail's skips aligned
    min_size = 48       # the last intra-patch branch halves the H/32 map and reduces it 2× again

    def __init__(self, dims: tuple[int, ...] = (64, 128, 320, 512), depths: tuple[int, ...] = (2, 2, 2, 2),
                 num_heads: tuple[int, ...] = (1, 2, 4, 4), sr_ratios: tuple[int, ...] = (4, 2, 2, 1),
                 intra_heads: tuple[int, ...] = (1, 2, 2), mlp_ratio: float = 2.0, drop_path_rate: float = 0.1,
                 decoder_depth: int = 3, decoder_heads: int = 8, decoder_mlp_ratio: float = 4.0,
                 num_queries: int = 48, tail_dims: tuple[int, int] = (16, 8), fourier_seed: int = 0):
        super().__init__()
        self.encoder = HierarchicalEncoder(dims, depths, num_heads, sr_ratios, intra_heads, mlp_ratio, drop_path_rate)
        self.bottleneck = LocalizationRemoval(dims[-1], fourier_seed)
        # TransWeather's decoder takes its drop-path rates from a 16-block schedule (its `depths=[3, 4, 6, 3]`)
        decoder_drop_rates = torch.linspace(0, drop_path_rate, 16, device="cpu").tolist()
        self.decoder = TaskQueryDecoder(dims[-1], decoder_depth, decoder_heads, num_queries, decoder_mlp_ratio,
                                        decoder_drop_rates)
        self.tail = ConvTail(dims, tail_dims)
        self.head = nn.Conv2d(tail_dims[1], 3, 3, padding=1, padding_mode="reflect")
        self.pool = GlobalAvgPool()

    def forward(self, x: torch.Tensor, return_global: bool = False):
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple, self.min_size)
        features = self.encoder(x.to(self.dtype))  # computed in the weights' dtype, returned in the input's
        decoded = self.decoder(self.bottleneck(features[-1]))
        out = torch.tanh(self.head(self.tail(decoded, features)))[..., :h, :w].to(x.dtype)
        return (out, self.pool(features[-1]).flatten(1)) if return_global else out

    def set_fourier_projection(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install a random Fourier projection: `weight` C×C/8 (512×64 for ka-net) and `bias` C, e.g. the draw
        the release made (`torch.manual_seed(s); W = torch.randn(512, 64); b = torch.FloatTensor(512).uniform_(0, 2π)`)."""
        fourier = self.bottleneck.receptive_fields.fourier
        if weight.shape != fourier.weight.shape or bias.shape != fourier.bias.shape:
            raise ValueError(f"the Fourier projection of this network is W {tuple(fourier.weight.shape)} and "
                             f"b {tuple(fourier.bias.shape)}, got {tuple(weight.shape)} and {tuple(bias.shape)}")
        fourier.weight.copy_(weight)
        fourier.bias.copy_(bias)

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept official KA-Net state dicts as well as this project's. An official one holds no Fourier
        projection: this network keeps its own (see `set_fourier_projection`)."""
        if not is_official_state_dict(state_dict):
            return state_dict
        fourier = "bottleneck.receptive_fields.fourier."
        own = {fourier + name: buffer for name, buffer in self.bottleneck.receptive_fields.fourier.named_buffers(recurse=False)}
        return convert_official_state_dict(state_dict) | own


# Official parameter names → this file's names, applied in order to each key (without `module.`).
_OFFICIAL_UNUSED = ("Tencoder.mini_patch_embed4.", "convtail.conv_output.")  # built, never called
_OFFICIAL_RENAMES = [
    (r"^Tencoder\.patch_embed(\d)\.", lambda m: f"encoder.stages.{int(m[1]) - 1}.embed."),
    (r"^Tencoder\.block(\d)\.", lambda m: f"encoder.stages.{int(m[1]) - 1}.blocks."),
    (r"^Tencoder\.norm(\d)\.", lambda m: f"encoder.stages.{int(m[1]) - 1}.norm."),
    (r"^Tencoder\.mini_patch_embed(\d)\.", lambda m: f"encoder.intra_patch.{int(m[1]) - 1}.embed."),
    (r"^Tencoder\.patch_block(\d)\.", lambda m: f"encoder.intra_patch.{int(m[1]) - 1}.blocks."),
    (r"^Tencoder\.pnorm(\d)\.", lambda m: f"encoder.intra_patch.{int(m[1]) - 1}.norm."),
    (r"^Tdecoder\.patch_embed1\.", "decoder.stage.embed."),
    (r"^Tdecoder\.block1\.", "decoder.stage.blocks."),
    (r"^Tdecoder\.norm1\.", "decoder.stage.norm."),
    (r"\.attn\.sr\.", ".attn.reduction."),
    (r"\.attn\.norm\.", ".attn.reduction_norm."),
    (r"\.attn\.task_query$", ".attn.task_queries"),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^block\.MRFEB1\.", "bottleneck.receptive_fields."),
    (r"^block\.", "bottleneck."),
    (r"\.faix\.", ".fourier.project."),
    (r"\.MRFRB_(\d)\.", lambda m: f".branches.{int(m[1]) - 1}."),
    (r"\.DFconv(\d)\.", r".conv\1."),
    (r"\.conv_cat\.", ".fuse."),
    (r"\.AM\.CAU\.fc1\.", ".attention.channel.local."),
    (r"\.AM\.CAU\.", ".attention.channel."),
    (r"\.AM\.SAU\.conv_1\.", ".attention.spatial.project."),
    (r"\.AM\.SAU\.conv_sigm\.", ".attention.spatial.gate."),
    (r"\.AM\.conv_out\.", ".attention.fuse."),
    (r"\.AGB\.fc\.", ".gate.mlp."),
    (r"\.AGB\.conv_out\.", ".gate.out."),
    (r"^convtail\.convd(\d+)x\.conv2d\.", r"tail.up\1."),
    (r"^convtail\.dense_(\d)\.0\.(conv\d)\.conv2d\.", lambda m: f"tail.refine{2 ** int(m[1])}.{m[2]}."),
    (r"^clean\.conv2d\.", "head."),
]


def is_official_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.removeprefix("module.").startswith("Tencoder.") for k in state_dict)


def convert_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of an official KA-Net state dict (with or without `module.`) to this project's, leaving
    out the two modules the release never calls."""
    converted = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(_OFFICIAL_UNUSED):
            continue
        for pattern, replacement in _OFFICIAL_RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


@register_model
def ka_net(**kwargs) -> KANet:
    return KANet(**kwargs)


@register_model
def ka_net_tiny(**kwargs) -> KANet:
    """Width- and depth-scaled KA-Net for CPU tests and demos (same structure)."""
    return KANet(**{"dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "decoder_depth": 1, "tail_dims": (8, 8)} | kwargs)
