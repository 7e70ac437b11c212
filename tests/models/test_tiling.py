"""Seed 003's tiling: a 1600x256 strip gives 6 tiles covering it, tile -> stitch is the
identity, dark tiles are dropped, tile samples keep their masks, and a tiled detector stitches
one map and one verdict per photo."""

from __future__ import annotations

import numpy as np
import pytest

from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.data.tiling import (
    is_dark,
    kept_tiles,
    stitch,
    tile,
    tile_samples,
    tile_shape,
    tile_spans,
)
from kensa.models.registry import create_detector
from kensa.models.types import Verdict

pytestmark = pytest.mark.usefixtures("one_thread")


def test_strip_gives_six_tiles_that_cover_it():
    spans = tile_spans((256, 1600), 6)
    assert len(spans) == 6
    assert {(b - t, r - lft) for t, b, lft, r in spans} == {(256, 267)}
    assert spans[0][2] == 0 and spans[-1][3] == 1600
    assert tile_shape((256, 1600), 6) == (256, 267)
    tall = tile_spans((900, 300), 3)
    assert [(t, b) for t, b, _, _ in tall] == [(0, 300), (300, 600), (600, 900)]


@pytest.mark.parametrize("shape", [(256, 1600, 3), (256, 1600), (200, 1000, 4), (300, 90)])
def test_tile_then_stitch_is_identity(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    tiles, spans = tile(image, 6)
    np.testing.assert_array_equal(stitch(tiles, spans, image.shape), image)
    floats = rng.random(shape[:2]).astype(np.float32)
    parts, spans = tile(floats, 6)
    np.testing.assert_array_equal(stitch(parts, spans, floats.shape), floats)


def test_dark_tiles_are_dropped():
    strip = SteelStripGenerator((256, 1600), seed=1).good(0).image.copy()
    strip[:, :540] = 4  # black margin over two whole tiles, not the third
    spans = [s for _, s in kept_tiles(strip, 6)]
    assert [s[2] for s in spans] == [s[2] for s in tile_spans(strip.shape[:2], 6)[2:]]
    assert is_dark(np.full((8, 8), 10, np.uint8)) and not is_dark(np.full((8, 8), 11, np.uint8))
    kept = kept_tiles(strip, 6)
    stitched = stitch([t for t, _ in kept], [s for _, s in kept], strip.shape)
    np.testing.assert_array_equal(stitched[:, 534:], strip[:, 534:])
    assert (stitched[:, :533] == 0).all()


def test_tile_samples_crop_masks_and_relabel():
    gen = SteelStripGenerator((128, 800), seed=2)
    strip = gen.defective(0, ["patches"])
    sample = Sample(labels=strip.labels, image=strip.image, masks_inline=strip.masks,
                    group="s0")
    tiles = tile_samples([sample], 6)
    assert len(tiles) == 6
    union = np.zeros(strip.image.shape[:2], bool)
    for t in tiles:
        top, bottom, left, right = t.span
        image = t.load_image()
        np.testing.assert_array_equal(image, strip.image[top:bottom, left:right])
        masks = t.load_masks(*image.shape[:2])
        assert set(t.labels) == set(masks)
        for m in masks.values():
            union[top:bottom, left:right] |= m
        assert t.group == "s0"
    np.testing.assert_array_equal(union, strip.masks["patches"])
    assert any(not t.labels for t in tiles) or strip.masks["patches"].all(axis=0).any()


def test_tiled_segmenter_gives_one_map_and_verdict_at_photo_size():
    detector = create_detector("segmenter_lite0", weights="none", labels=["patches"],
                               input_size=(64, 64), decoder_channels=(32, 16, 16, 8, 8),
                               tiles=6)
    detector.set_threshold(1e-6)  # every pixel above threshold: one mask over all kept tiles
    strip = SteelStripGenerator((128, 800), seed=3).good(0).image.copy()
    strip[:, :134] = 0  # first tile dark
    maps = detector.probability_maps([strip])
    assert maps[0].shape == (1, 128, 800)
    assert (maps[0][:, :, :133] == 0).all() and (maps[0][:, :, 134:] > 0).all()
    detection = detector.predict(strip)
    assert detection.verdict == Verdict.DEFECT
    assert detection.findings[0].mask.shape == (128, 800)
    assert not detection.findings[0].mask[:, :133].any()


def test_tiled_classifier_merges_tiles_into_one_detection():
    detector = create_detector("classifier_lite0", weights="none", labels=["patches"],
                               input_size=(64, 64), tiles=6)
    strip = SteelStripGenerator((128, 800), seed=3).good(0).image
    detector.set_threshold(0.999999)
    assert detector.predict(strip).verdict == Verdict.OK
    assert detector.predict(strip).timings_ms["tiles"] == 6
    detector.set_threshold(1e-6)
    detection = detector.predict(strip)
    assert detection.verdict == Verdict.DEFECT
    assert [f.label for f in detection.findings] == ["patches"]
    assert all(layer.values.shape == (128, 800) for layer in detection.evidence)
    assert detector.predict(np.zeros((128, 800, 3), np.uint8)).verdict == Verdict.OK
