"""Seed 003's tiling: a wide strip is cut into ``n`` tiles along its long side, tiles that are
mostly black margin (mean gray <= ``dark``) are dropped, and tile outputs are stitched back
into one map and one verdict.

Tiles are ``ceil(W / n)`` wide and spread evenly, so they cover the strip exactly (a
1600 x 256 strip gives six 267 x 256 tiles, neighbours overlapping by a pixel or two);
stitching averages overlaps, so ``stitch(tile(x)) == x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from kensa.models.data.samples import Sample
from kensa.models.types import BBox, Detection, EvidenceLayer, Finding, Task, Verdict

DARK_MEAN = 10.0
"""Seed 003 dropped tiles whose mean gray value is <= 10."""

Span = tuple[int, int, int, int]
"""``(top, bottom, left, right)`` of a tile, exclusive ends."""


def tile_spans(shape: tuple[int, int], n: int) -> list[Span]:
    """``n`` equal tiles along the longer side of an ``(H, W)`` image, covering it exactly."""
    height, width = shape
    if n < 1:
        raise ValueError("n must be at least 1")
    long_side = max(height, width)
    n = min(n, long_side)
    size = math.ceil(long_side / n)
    starts = np.round(np.linspace(0, long_side - size, n)).astype(int).tolist()
    if width >= height:
        return [(0, height, s, s + size) for s in starts]
    return [(s, s + size, 0, width) for s in starts]


def tile_shape(shape: tuple[int, int], n: int) -> tuple[int, int]:
    top, bottom, left, right = tile_spans(shape, n)[0]
    return bottom - top, right - left


def tile(image: np.ndarray, n: int) -> tuple[list[np.ndarray], list[Span]]:
    spans = tile_spans(image.shape[:2], n)
    return [image[t:b, lft:r] for t, b, lft, r in spans], spans


def is_dark(tile_image: np.ndarray, dark: float = DARK_MEAN) -> bool:
    """A black-margin tile: mean gray value <= ``dark``."""
    return float(np.asarray(tile_image, dtype=np.float32).mean()) <= dark


def kept_tiles(image: np.ndarray, n: int, dark: float = DARK_MEAN
               ) -> list[tuple[np.ndarray, Span]]:
    """The tiles worth looking at (dark ones dropped) with their spans."""
    tiles, spans = tile(image, n)
    return [(t, s) for t, s in zip(tiles, spans, strict=True) if not is_dark(t, dark)]


def stitch(tiles: Sequence[np.ndarray], spans: Sequence[Span], shape: tuple[int, ...],
           fill: float = 0.0) -> np.ndarray:
    """Tiles (``h x w`` or ``h x w x C``) back into one ``shape`` array; overlaps are
    averaged, pixels no tile covers (dropped tiles) take ``fill``."""
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape[:2], dtype=np.float64)
    for values, (t, b, lft, r) in zip(tiles, spans, strict=True):
        total[t:b, lft:r] += values
        count[t:b, lft:r] += 1
    covered = count > 0
    out = np.full(shape, fill, dtype=np.float64)
    scale = count[covered] if total.ndim == 2 else count[covered][:, None]
    out[covered] = total[covered] / scale
    dtype = tiles[0].dtype if len(tiles) else np.float32
    return out.astype(dtype) if np.issubdtype(dtype, np.floating) else \
        np.round(out).astype(dtype)


# -- training: tile samples -------------------------------------------------------------------


@dataclass
class TileSample(Sample):
    """One tile of a source sample (decoded lazily; masks cropped alike)."""

    source: Sample | None = None
    span: Span = (0, 0, 0, 0)

    def load_image(self) -> np.ndarray:
        t, b, lft, r = self.span
        return np.ascontiguousarray(self.source.load_image()[t:b, lft:r])

    def load_masks(self, height: int, width: int) -> dict[str, np.ndarray]:
        t, b, lft, r = self.span
        full = self.source.load_image().shape[:2]
        masks = self.source.load_masks(*full)
        return {k: np.ascontiguousarray(m[t:b, lft:r]) for k, m in masks.items()
                if m[t:b, lft:r].any()}


def tile_samples(samples: Sequence[Sample], n: int, dark: float = DARK_MEAN
                 ) -> list[Sample]:
    """Every sample as its non-dark tiles. With masks, a tile's labels are those whose mask
    reaches into it; without, it keeps the strip's labels."""
    out: list[Sample] = []
    for sample in samples:
        image = sample.load_image()
        masks = sample.load_masks(*image.shape[:2]) if sample.has_masks else None
        for _, span in kept_tiles(image, n, dark):
            t, b, lft, r = span
            labels = sample.labels if masks is None else tuple(
                lab for lab in sample.labels if lab in masks and masks[lab][t:b, lft:r].any())
            out.append(TileSample(
                labels=labels, path=sample.path, image=None,
                mask_loader=sample.mask_loader, masks_inline=sample.masks_inline,
                split=sample.split, group=sample.group or sample.name,
                meta={**sample.meta, "name": f"{sample.name}#tile{t}-{lft}",
                      "tile": list(span)}, source=sample, span=span))
    return out


# -- inference: one map, one verdict ----------------------------------------------------------


def _offset_box(box: BBox | None, span: Span) -> BBox | None:
    if box is None:
        return None
    t, _, lft, _ = span
    return (box[0] + lft, box[1] + t, box[2] + lft, box[3] + t)


def predict_tiled(predict: Callable[[list[np.ndarray]], list[Detection]], image: np.ndarray,
                  n: int, dark: float = DARK_MEAN) -> Detection:
    """Run ``predict`` on the non-dark tiles of ``image`` and merge: findings moved to image
    coordinates (masks pasted at full size), evidence layers stitched per (kind, label),
    the worst verdict and the highest anomaly score. An all-dark image is ``ok``."""
    pieces = kept_tiles(image, n, dark)
    size = image.shape[:2]
    if not pieces:
        return Detection(detector="tiled", version="", task=Task.CLASSIFY, verdict=Verdict.OK,
                         timings_ms={"tiles": 0})
    detections = predict([t for t, _ in pieces])
    first = detections[0]
    findings: list[Finding] = []
    layers: dict[tuple[str, str | None], tuple[list[np.ndarray], list[Span], tuple]] = {}
    for det, (tile_image, span) in zip(detections, pieces, strict=True):
        t, b, lft, r = span
        for f in det.findings:
            mask = None
            if f.mask is not None:
                mask = np.zeros(size, bool)
                mask[t:b, lft:r] = f.mask
            findings.append(replace(f, bbox=_offset_box(f.bbox, span), mask=mask))
        for layer in det.evidence:
            values = _resize(layer.values, tile_image.shape[:2])
            entry = layers.setdefault((layer.kind, layer.label), ([], [], layer.scale))
            entry[0].append(values)
            entry[1].append(span)
    evidence = [EvidenceLayer(kind=kind, label=label, scale=scale,
                              values=stitch(vals, spans, size, fill=scale[0]).astype(np.float32))
                for (kind, label), (vals, spans, scale) in layers.items()]
    scores = [d.anomaly_score for d in detections if d.anomaly_score is not None]
    timings: dict[str, float] = {"tiles": float(len(pieces))}
    for det in detections:
        for key, ms in det.timings_ms.items():
            timings[key] = timings.get(key, 0.0) + ms
    # image-level findings (no mask, no box: a classifier's) once per label, best tile's score
    best: dict[tuple[str, str], Finding] = {}
    located = []
    for f in findings:
        if f.mask is None and f.bbox is None:
            key = (f.label, f.detector)
            if key not in best or f.score > best[key].score:
                best[key] = f
        else:
            located.append(f)
    findings = [*located, *best.values()]
    findings.sort(key=lambda f: f.score, reverse=True)
    return Detection(detector=first.detector, version=first.version, task=first.task,
                     verdict=Verdict.combine([d.verdict for d in detections]),
                     findings=findings, anomaly_score=max(scores) if scores else None,
                     threshold=first.threshold, evidence=evidence, timings_ms=timings,
                     threshold_method=first.threshold_method)


def _resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if values.shape[:2] == tuple(size):
        return values
    import cv2

    return cv2.resize(values.astype(np.float32), (size[1], size[0]),
                      interpolation=cv2.INTER_LINEAR)
