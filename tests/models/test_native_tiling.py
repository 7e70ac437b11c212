"""The native-resolution tiler: tile -> stitch is the identity, strided maps line up."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from kensa.models.tiling import TileConfig, TileGrid, tiled


@pytest.mark.parametrize(("height", "width"), [(1261, 500), (256, 256), (100, 700), (31, 33)])
@pytest.mark.parametrize(("size", "overlap"), [(256, 64), (128, 32), (96, 0)])
def test_tile_then_stitch_is_the_identity(height, width, size, overlap):
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height))
    grid = TileGrid.for_image(height, width, TileConfig(size=size, overlap=overlap))
    tiles = grid.split(grid.pad(x))
    assert tiles.shape == (2 * len(grid), 3, size, size)
    back = grid.crop(grid.stitch(tiles))
    torch.testing.assert_close(back, x, rtol=0, atol=1e-6)


def test_tiles_cover_the_photo_with_the_asked_overlap():
    grid = TileGrid.for_image(1261, 500, TileConfig(size=256, overlap=64))
    assert (grid.padded_height, grid.padded_width) == (1280, 512)
    rows = sorted({y for y, _ in grid.origins})
    cols = sorted({x for _, x in grid.origins})
    assert rows == [0, 192, 384, 576, 768, 960, 1024] and cols == [0, 192, 256]
    assert all(y % 32 == 0 and x % 32 == 0 for y, x in grid.origins)
    covered = torch.zeros(grid.padded_height, grid.padded_width)
    for y, x in grid.origins:
        covered[y:y + 256, x:x + 256] += 1
    assert covered.min() >= 1


def test_strided_maps_stitch_to_the_map_of_the_whole_photo():
    """A map without context across tiles (average pooling at stride 8) stitched from tiles
    equals the same map of the whole padded photo: tiles land where they came from."""
    x = torch.rand(1, 2, 300, 200, generator=torch.Generator().manual_seed(0))
    tile = TileConfig(size=128, overlap=32)
    stitched, grid = tiled(lambda t: F.avg_pool2d(t, 8), x, tile, batch=3)
    whole = F.avg_pool2d(grid.pad(x), 8)
    assert stitched.shape == whole.shape == (1, 2, 320 // 8, 224 // 8)
    torch.testing.assert_close(stitched, whole, rtol=0, atol=1e-6)


def test_stitch_refuses_maps_that_do_not_divide_the_tile():
    grid = TileGrid.for_image(64, 64, TileConfig(size=64, overlap=0))
    with pytest.raises(ValueError, match="do not divide"):
        grid.stitch(torch.zeros(1, 1, 5, 5))


@pytest.mark.parametrize("bad", [{"size": 100}, {"size": 64, "overlap": 64},
                                 {"size": 64, "overlap": 16}])
def test_tile_config_refuses_sizes_off_the_stride_grid(bad):
    with pytest.raises(ValidationError):
        TileConfig(**bad)
