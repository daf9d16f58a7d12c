"""Tiled inference: run a network over overlapping tiles of an image too large to process whole, and
blend the tiles back into one seamless output.

Two things make tiles differ from the whole image, and each has its remedy here:
- **Borders.** A tile's outermost pixels lack the context beyond the tile. Tiles overlap, and each tile's
  output is weighted by a window that ramps down towards its inner edges, so every output pixel comes
  mostly from a tile in which it lies far from an edge.
- **Global statistics.** MixDehazeNet's channel gates and SK fusions pool over the whole image
  (`models.layers.GlobalAvgPool`). Run independently, each tile would gate its channels by its own mean —
  a sky tile and a ground tile would be dehazed differently. So every tile is handed image-wide means,
  recorded for every pooling layer by one of two first passes:
  - `statistics="downscaled"` (default): the whole image at half the side length (a quarter of the pixels;
    less when that would exceed `statistics_pixels`), in one pass: a small fraction of the tiles' own time,
    about as close to the whole-image output as "tiles" (BENCHMARKS.md, "Tiled against whole-image inference").
  - `statistics="tiles"`: a pass over the tiles records each pool's input summed over each tile's *core*
    (the tiles' cores partition the image), which gives the whole image's mean (deeper pools see inputs
    computed with tile-local means in that pass). It costs a second full pass.
  `statistics="own"` lets every tile use its own means (for comparison).

What is not shared: attention that spans the whole image (KA-Net's transformer encoder) sees one tile at
a time, so tiling is an approximation there.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

from models import DehazingNetwork
from models.layers import GlobalAvgPool
from utils.image import pad_to_multiple


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) with at least `overlap` shared pixels;
    the last tile ends at `length`."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def core_bounds(starts: Sequence[int], tile: int, length: int, multiple: int) -> list[tuple[int, int]]:
    """The part of each tile that it alone stands for: cut at the middle of each overlap (on a multiple of
    `multiple`, so the cut falls on whole feature pixels at every scale). The cores partition [0, length)."""
    cuts = [0] + [(start + tile + next_start) // 2 // multiple * multiple
                  for start, next_start in zip(starts, starts[1:])] + [length]
    return list(zip(cuts, cuts[1:]))


def blend_window(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D tile weight: a linear ramp over the `overlap` pixels at each inner edge, 1 elsewhere. Edges that are
    also image edges are not ramped (no other tile covers them)."""
    weight = torch.ones(length)
    ramp = (torch.arange(overlap) + 0.5) / overlap
    if overlap and not at_start:
        weight[:overlap] = ramp
    if overlap and not at_end:
        weight[length - overlap:] = ramp.flip(0)
    return weight


@dataclass
class _Tile:
    y: int
    x: int
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 relative to the tile


class SharedStatistics:
    """Forward hooks on every GlobalAvgPool of a model: `collect` accumulates the pools' inputs over tile
    cores, `replay` replaces the pools' outputs by the image-wide means collected before."""

    def __init__(self, model: nn.Module):
        self.pools = [m for m in model.modules() if isinstance(m, GlobalAvgPool)]
        self.sums: dict[tuple[int, int], torch.Tensor] = {}
        self.areas: dict[tuple[int, int], int] = {}
        self.means: dict[tuple[int, int], torch.Tensor] = {}
        self.collect = self.replay = False
        self.tile: _Tile | None = None
        self._tile_height = 0  # of the network's input, to find each pool's scale
        self._calls: dict[int, int] = {}

    def start_tile(self, tile: _Tile) -> None:
        self.tile, self._calls = tile, {}

    def finish_pass(self) -> None:
        """Turn the sums collected over one pass into the means the next pass replays."""
        if self.collect:
            self.means = {key: total / self.areas[key] for key, total in self.sums.items()}
            self.sums, self.areas = {}, {}

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        # a pool may run more than once per forward: key every call by its order within the tile's forward
        index = self._calls.get(id(module), 0)
        self._calls[id(module)] = index + 1
        key = (id(module), index)
        if self.collect:
            features, (y0, y1, x0, x1), tile_height = args[0], self.tile.core, self._tile_height
            scale = features.shape[-2] / tile_height  # 1, 1/2, 1/4 … at the pool's depth in the network
            core = features[..., round(y0 * scale):round(y1 * scale), round(x0 * scale):round(x1 * scale)]
            self.sums[key] = self.sums.get(key, 0) + core.float().sum((2, 3), keepdim=True)
            self.areas[key] = self.areas.get(key, 0) + core.shape[-2] * core.shape[-1]
        if self.replay:
            return self.means[key].to(output.dtype)
        return output

    @contextlib.contextmanager
    def attached(self, tile_height: int) -> Iterator[SharedStatistics]:
        self._tile_height = tile_height
        handles = [pool.register_forward_hook(self._hook) for pool in self.pools]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def tile_layout(model: DehazingNetwork, padded_height: int, padded_width: int, tile: int,
                overlap: int) -> tuple[list[_Tile], int, int]:
    """The tiles `tiled_forward` runs over an image padded to the network's multiple: their positions and
    cores, and the tile height and width (`tile` rounded to the multiple, at most the image)."""
    multiple, min_size = model.size_rule()
    tile = max(tile // multiple * multiple, min_size)
    if not 0 <= overlap < tile // 2:
        raise ValueError(f"overlap must be in [0, tile/2), got overlap {overlap} for tile {tile}")
    tile_height, tile_width = min(tile, padded_height), min(tile, padded_width)
    ys, xs = tile_starts(padded_height, tile_height, overlap), tile_starts(padded_width, tile_width, overlap)
    y_cores = core_bounds(ys, tile_height, padded_height, multiple)
    x_cores = core_bounds(xs, tile_width, padded_width, multiple)
    tiles = [_Tile(y, x, (cy0 - y, cy1 - y, cx0 - x, cx1 - x))
             for y, (cy0, cy1) in zip(ys, y_cores) for x, (cx0, cx1) in zip(xs, x_cores)]
    return tiles, tile_height, tile_width


@torch.no_grad()
def tiled_forward(model: DehazingNetwork, image: torch.Tensor, *extra_inputs: torch.Tensor, tile: int = 512,
                  overlap: int = 64, statistics: str = "downscaled", statistics_pixels: int = 1_000_000,
                  amp_dtype: torch.dtype | None = None, progress: bool = False) -> torch.Tensor:
    """`model(image, *extra_inputs)` computed tile by tile: image 1×3×H×W in [-1, 1] (any size), output the
    same shape, float32, on the image's device. `tile` and `overlap` are in pixels; the tile is rounded to
    the network's size multiple. `statistics`: where the tiles' image-wide means come from (module docstring).
    Peak memory is that of one tile (or of the downscaled image) plus the image-sized output and weights."""
    if image.shape[0] != 1:
        raise ValueError(f"tiled inference takes one image at a time, got a batch of {image.shape[0]}")
    if statistics not in ("downscaled", "tiles", "own"):
        raise ValueError(f'statistics must be "downscaled", "tiles" or "own", got {statistics!r}')
    height, width = image.shape[-2:]
    # pad as the network itself would, so that every tile is a whole number of feature pixels
    padded = pad_to_multiple(image, *model.size_rule())
    padded_height, padded_width = padded.shape[-2:]
    tiles, tile_height, tile_width = tile_layout(model, padded_height, padded_width, tile, overlap)

    shared = SharedStatistics(model)
    first_pass = statistics if shared.pools and len(tiles) > 1 and statistics != "own" else None
    output = torch.zeros(1, 3, padded_height, padded_width, device=image.device)
    weights = torch.zeros(1, 1, padded_height, padded_width, device=image.device)
    bar = tqdm(total=len(tiles) * (2 if first_pass == "tiles" else 1), desc="tiles", disable=not progress,
               dynamic_ncols=True, leave=False)
    with torch.autocast(image.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        if first_pass == "downscaled":
            small = downscaled(padded, statistics_pixels)
            with shared.attached(small.shape[-2]):
                shared.collect = True
                shared.start_tile(_Tile(0, 0, (0, small.shape[-2], 0, small.shape[-1])))
                model(small, *extra_inputs)
                shared.finish_pass()
        with shared.attached(tile_height):
            for pass_ in (("collect", "final") if first_pass == "tiles" else ("final",)):
                shared.collect, shared.replay = pass_ == "collect", first_pass is not None and pass_ == "final"
                for t in tiles:
                    shared.start_tile(t)
                    result = model(padded[..., t.y:t.y + tile_height, t.x:t.x + tile_width], *extra_inputs)
                    if pass_ == "final":
                        window = (blend_window(tile_height, overlap, t.y == 0, t.y + tile_height == padded_height)[:, None]
                                  * blend_window(tile_width, overlap, t.x == 0, t.x + tile_width == padded_width)
                                  ).to(image.device)
                        output[..., t.y:t.y + tile_height, t.x:t.x + tile_width] += result.float() * window
                        weights[..., t.y:t.y + tile_height, t.x:t.x + tile_width] += window
                    bar.update()
                shared.finish_pass()
    bar.close()
    return (output / weights)[..., :height, :width]


def downscaled(image: torch.Tensor, max_pixels: int) -> torch.Tensor:
    """The image at half its side length, or smaller so as to hold at most `max_pixels` (area averaging)."""
    height, width = image.shape[-2:]
    scale = min(0.5, (max_pixels / (height * width)) ** 0.5)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.interpolate(image, size=size, mode="area")
