"""Tiny labelled images with exact masks that a segmenter learns in seconds (tests only)."""

from __future__ import annotations

import numpy as np

from kensa.models.data.samples import Sample

LABELS = ["spot", "line"]
IMAGE = (96, 384)  # originals larger than the input: masks are resized back
INPUT = (64, 256)


def make_samples(n: int, seed: int, *, spots: int = 2, spot: int = 24, spot_gap: int = 6,
                 line: tuple[int, int] = (8, 150), spot_value: int = 225,
                 line_value: int = 25) -> list[Sample]:
    """Gray noise strips; 'spot' = ``spots`` bright squares of side ``spot``, 'line' = a dark
    bar of ``line`` (height, width); i % 4 picks none / spot / line / both."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE
    line_height, line_width = line
    out = []
    for i in range(n):
        image = rng.normal(110, 12, IMAGE).clip(0, 255)
        masks = {}
        if i % 4 in (1, 3):
            mask = np.zeros(IMAGE, bool)
            for _ in range(spots):
                y = rng.integers(4, height - spot - spot_gap)
                x = rng.integers(4, width - spot - spot_gap)
                mask[y:y + spot, x:x + spot] = True
            image[mask] = spot_value
            masks["spot"] = mask
        if i % 4 in (2, 3):
            y = rng.integers(4, height - line_height - 4)
            x = rng.integers(0, width - line_width)
            mask = np.zeros(IMAGE, bool)
            mask[y:y + line_height, x:x + line_width] = True
            image[mask] = line_value
            masks["line"] = mask
        rgb = np.repeat(image.astype(np.uint8)[..., None], 3, axis=2)
        out.append(Sample(labels=tuple(sorted(masks)), image=rgb, masks_inline=masks,
                          meta={"name": f"s{seed}-{i}"}))
    return out
