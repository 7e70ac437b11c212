"""Native-resolution tiling shared by the good-only detectors.

A photo is padded (edge-replicated) to a multiple of ``multiple`` and to at least one tile, cut
into overlapping square tiles whose origins are multiples of ``multiple`` (the last tile of a
row or column ends on the border), each tile goes through a function giving a map at stride
``s`` (features or scores), and the tile maps are stitched into one map of the padded photo at
stride ``s``. Overlaps are blended with a pyramid window (1 at a tile's edge, growing towards its
centre), so the values from a tile's interior, least touched by the network's zero padding, win;
stitching tiles of one tensor gives that tensor back exactly (``stitch(split(x)) == x``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

MULTIPLE = 32
"""Tile sizes, overlaps and origins are multiples of the coarsest backbone stride."""


class TileConfig(BaseModel):
    """Tiles at the photo's own resolution: ``size`` x ``size`` pixels, ``overlap`` shared."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(256, ge=MULTIPLE, description="tile side in pixels (multiple of 32)")
    overlap: int = Field(64, ge=0, description="pixels neighbouring tiles share (multiple of "
                                               "32, less than size)")

    @model_validator(mode="after")
    def _check(self) -> TileConfig:
        if self.size % MULTIPLE or self.overlap % MULTIPLE:
            raise ValueError(f"tile size and overlap must be multiples of {MULTIPLE}")
        if self.overlap >= self.size:
            raise ValueError("tile overlap must be smaller than the tile size")
        return self


def _origins(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    return [*starts, length - size]


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one padded ``height`` x ``width`` photo lie."""

    height: int
    width: int
    padded_height: int
    padded_width: int
    size: int
    origins: tuple[tuple[int, int], ...]

    @classmethod
    def for_image(cls, height: int, width: int, tile: TileConfig) -> TileGrid:
        def padded(n: int) -> int:
            return max(tile.size, -(-n // MULTIPLE) * MULTIPLE)

        ph, pw = padded(height), padded(width)
        step = tile.size - tile.overlap
        origins = tuple((y, x) for y in _origins(ph, tile.size, step)
                        for x in _origins(pw, tile.size, step))
        return cls(height, width, ph, pw, tile.size, origins)

    def __len__(self) -> int:
        return len(self.origins)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``B x C x height x width`` -> padded by edge replication (bottom and right)."""
        dh, dw = self.padded_height - x.shape[-2], self.padded_width - x.shape[-1]
        return F.pad(x, (0, dw, 0, dh), mode="replicate") if dh or dw else x

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Padded ``B x C x H x W`` -> tiles ``(B * T) x C x size x size``, image-major."""
        s = self.size
        tiles = [x[:, :, y:y + s, x0:x0 + s] for y, x0 in self.origins]
        return torch.stack(tiles, dim=1).flatten(0, 1)

    def window(self, side: int, device=None) -> torch.Tensor:
        """Pyramid blending weights ``side x side``: 1 at the edge, largest at the centre."""
        ramp = torch.arange(side, device=device, dtype=torch.float32)
        edge = torch.minimum(ramp, side - 1 - ramp) + 1
        return torch.minimum(edge[:, None], edge[None, :])

    def stitch(self, maps: torch.Tensor) -> torch.Tensor:
        """Tile maps ``(B * T) x C x s' x s'`` (any common stride) -> ``B x C x H' x W'`` of
        the padded photo at that stride, overlaps blended."""
        side = maps.shape[-1]
        if self.size % side or maps.shape[-2] != side:
            raise ValueError(f"tile maps of {tuple(maps.shape[-2:])} do not divide tiles of "
                             f"{self.size}")
        stride = self.size // side
        b = maps.shape[0] // len(self)
        maps = maps.view(b, len(self), *maps.shape[1:])
        out = maps.new_zeros(b, maps.shape[2], self.padded_height // stride,
                             self.padded_width // stride)
        total = maps.new_zeros(self.padded_height // stride, self.padded_width // stride)
        weight = self.window(side, maps.device).to(maps.dtype)
        for i, (y, x) in enumerate(self.origins):
            ys, xs = slice(y // stride, y // stride + side), slice(x // stride, x // stride + side)
            out[:, :, ys, xs] += maps[:, i] * weight
            total[ys, xs] += weight
        return out / total

    def crop(self, full: torch.Tensor) -> torch.Tensor:
        """A map of the padded photo (any stride) resized to pixels and cut to the photo."""
        if full.shape[-2:] != (self.padded_height, self.padded_width):
            full = F.interpolate(full, size=(self.padded_height, self.padded_width),
                                 mode="bilinear", align_corners=False)
        return full[..., :self.height, :self.width]


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: TileConfig,
          batch: int = 8) -> tuple[torch.Tensor, TileGrid]:
    """Run ``fn`` (tiles -> maps at one stride) over the tiles of ``x`` (``B x C x H x W``,
    the photo's own size) and stitch: the full map at ``fn``'s stride and the grid."""
    grid = TileGrid.for_image(int(x.shape[-2]), int(x.shape[-1]), tile)
    tiles = grid.split(grid.pad(x))
    maps = torch.cat([fn(tiles[i:i + batch]) for i in range(0, tiles.shape[0], batch)])
    return grid.stitch(maps), grid
