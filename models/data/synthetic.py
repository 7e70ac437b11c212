"""Procedural steel-strip images with the four Severstal defect families and exact masks.

A strip is a grayscale rolled-steel texture (streaks along the rolling direction = image
x axis, low-frequency brightness waves, fine grain, vignetting across the strip). Defects
are additive brightness changes rendered in their own boxes; a pixel belongs to a defect
mask exactly when the defect changed its gray value by at least ``CONTRAST_THRESHOLD``,
and every other pixel is left identical to the defect-free strip (``SyntheticStrip.clean``).
Several defects on one strip sit in disjoint vertical bands, so their masks never overlap
and a class-indexed mask PNG stores them losslessly.

Everything is deterministic per ``(seed, index)``: ``good(i)`` and ``defective(i)`` draw
from independent random streams, so asking for strip 7 never depends on strips 0-6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree
from tqdm import tqdm

from kensa.models.data.samples import Sample

DEFECT_CLASSES: tuple[str, ...] = ("pitted_surface", "crazing", "scratches", "patches")
CONTRAST_THRESHOLD = 6
"""Gray levels a defect must change a pixel by for the pixel to be in its mask."""
CLASSES_FILE = "classes.txt"
BACKGROUND = "background"

_GOOD_STREAM, _DEFECT_STREAM = 0, 1


@dataclass
class SyntheticStrip:
    """One generated strip: RGB image (gray repeated), a bool mask per label, and its name."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    labels: tuple[str, ...]
    name: str
    clean: np.ndarray | None = None  # the same strip without its defects (HxWx3 uint8)

    @property
    def is_good(self) -> bool:
        return not self.labels


# --------------------------------------------------------------------------- noise helpers


def _interp_axis(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Resample ``a`` to ``n`` points along ``axis`` with smoothstep (C1) interpolation.

    (A gather, not a matrix product: multi-threaded BLAS on a busy machine is far slower.)"""
    m = a.shape[axis]
    pos = np.linspace(0.0, m - 1.0, n, dtype=np.float32)
    i0 = np.clip(pos.astype(np.int64), 0, m - 2)
    f = pos - i0
    f = f * f * (3.0 - 2.0 * f)
    shape = [1] * a.ndim
    shape[axis] = n
    f = f.reshape(shape)
    a0 = np.take(a, i0, axis=axis)
    a1 = np.take(a, i0 + 1, axis=axis)
    return a0 + (a1 - a0) * f


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int
                  ) -> np.ndarray:
    """Roughly N(0, 1) value noise of shape (h, w) varying over ``cells`` grid cells."""
    grid = rng.standard_normal((max(cells_y, 1) + 1, max(cells_x, 1) + 1)).astype(np.float32)
    return _interp_axis(_interp_axis(grid, h, 0), w, 1)


# --------------------------------------------------------------------------- defect renderers

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (exclusive ends)
Renderer = Callable[[np.random.Generator, int, tuple[int, int], float], tuple[Box, np.ndarray]]


def _place(rng: np.random.Generator, h: float, w: float, height: int,
           band: tuple[int, int]) -> Box:
    """A random box of about (h, w) inside the image rows and the column band."""
    bx0, bx1 = band
    hh = int(np.clip(round(h), 4, height))
    ww = int(np.clip(round(w), 4, bx1 - bx0))
    y0 = int(rng.integers(0, height - hh + 1))
    x0 = int(rng.integers(bx0, bx1 - ww + 1))
    return y0, y0 + hh, x0, x0 + ww


def _pitted_surface(rng: np.random.Generator, height: int, band: tuple[int, int],
                    scale: float) -> tuple[Box, np.ndarray]:
    """A cluster (or a few sub-clusters) of small dark pits, slightly stretched along x."""
    box = _place(rng, rng.uniform(30, 120) * scale, rng.uniform(60, 340) * scale, height, band)
    h, w = box[1] - box[0], box[3] - box[2]
    delta = np.zeros((h, w), np.float32)
    n_sub = int(rng.integers(1, 4))
    centres = np.stack([rng.uniform(0.25, 0.75, n_sub) * h, rng.uniform(0.2, 0.8, n_sub) * w], 1)
    density = rng.uniform(0.6, 1.6)
    n_pits = int(np.clip(density * h * w / (90 * scale * scale), 12, 160))
    depth_scale = rng.uniform(30, 70)
    pit_scale = max(scale, 0.6)
    for _ in range(n_pits):
        cy, cx = centres[rng.integers(n_sub)]
        y = cy + rng.normal(0, h / 6)
        x = cx + rng.normal(0, w / (5 + n_sub))
        r = rng.uniform(0.7, 2.6) * pit_scale
        stretch = rng.uniform(1.0, 2.2)
        depth = depth_scale * rng.uniform(0.6, 1.3)
        ry, rx = r, r * stretch
        if not (2.5 * ry <= y <= h - 2.5 * ry and 2.5 * rx <= x <= w - 2.5 * rx):
            continue  # whole pits only: no pit is cut by the box
        y0, y1 = int(max(y - 3 * ry, 0)), int(min(y + 3 * ry + 1, h))
        x0, x1 = int(max(x - 3 * rx, 0)), int(min(x + 3 * rx + 1, w))
        if y1 <= y0 or x1 <= x0:
            continue
        yy = (np.arange(y0, y1, dtype=np.float32)[:, None] - y) / ry
        xx = (np.arange(x0, x1, dtype=np.float32)[None, :] - x) / rx
        pit = -depth * np.exp(-0.5 * (yy * yy + xx * xx))
        np.minimum(delta[y0:y1, x0:x1], pit, out=delta[y0:y1, x0:x1])
    return box, delta


def _crazing(rng: np.random.Generator, height: int, band: tuple[int, int],
             scale: float) -> tuple[Box, np.ndarray]:
    """A partly broken network of fine dark cracks (boundaries of jittered Voronoi cells)."""
    box = _place(rng, rng.uniform(40, 150) * scale, rng.uniform(80, 360) * scale, height, band)
    h, w = box[1] - box[0], box[3] - box[2]
    cell = rng.uniform(9, 20) * max(scale, 0.6)
    stretch = rng.uniform(1.0, 2.4)  # cells elongated along the rolling direction
    # jittered grid seeds: cells of similar size, no slivers between near-coincident seeds
    gy = np.arange(-cell, h + 2 * cell, cell)
    gx = np.arange(-cell, w / stretch + 2 * cell, cell)
    seeds = np.stack(np.meshgrid(gy, gx, indexing="ij"), -1).reshape(-1, 2)
    seeds = seeds + rng.uniform(-0.38, 0.38, seeds.shape) * cell
    jitter = cell * rng.uniform(0.12, 0.3)
    cy, cx = max(2, int(h / (2.5 * cell))), max(2, int(w / (2.5 * cell)))
    yy = np.arange(h, dtype=np.float32)[:, None] + jitter * _smooth_noise(rng, h, w, cy, cx)
    xx = np.arange(w, dtype=np.float32)[None, :] + jitter * _smooth_noise(rng, h, w, cy, cx)
    pts = np.stack([yy.ravel(), xx.ravel() / stretch], 1)
    dist, _ = cKDTree(seeds).query(pts, k=2)
    edge = (dist[:, 1] - dist[:, 0]).reshape(h, w).astype(np.float32) * (stretch ** 0.5)
    width = rng.uniform(0.6, 1.1) * max(scale, 0.7)
    crack = np.exp(-0.5 * (edge / width) ** 2)
    keep = _smooth_noise(rng, h, w, max(2, h // 12), max(2, w // 12))
    keep = np.clip((keep + rng.uniform(0.3, 0.9)) * 2.0, 0.0, 1.0)
    ey = np.sin(np.linspace(0, np.pi, h, dtype=np.float32))[:, None]
    ex = np.sin(np.linspace(0, np.pi, w, dtype=np.float32))[None, :]
    envelope = np.clip(3.0 * ey * ex, 0.0, 1.0)
    depth = rng.uniform(28, 65)
    return box, -depth * crack * keep * envelope


def _scratches(rng: np.random.Generator, height: int, band: tuple[int, int],
               scale: float) -> tuple[Box, np.ndarray]:
    """One to three long thin bright or dark lines, mostly along the rolling direction."""
    bx0, bx1 = band
    bw = bx1 - bx0
    delta = np.zeros((height, bw), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.8:
            angle = np.deg2rad(rng.uniform(-5, 5))
            length = rng.uniform(0.3, 0.95) * bw
        else:
            angle = np.deg2rad(rng.uniform(25, 75) * rng.choice([-1, 1]))
            length = rng.uniform(0.5, 1.2) * height / abs(np.sin(angle))
        dy, dx = np.sin(angle), np.cos(angle)
        length = min(length, 0.95 * bw / abs(dx), 0.95 * height / max(abs(dy), 1e-6) + 0.95 * bw)
        cy = rng.uniform(0.1, 0.9) * height
        cx = rng.uniform(0.5 * abs(dx) * length, bw - 0.5 * abs(dx) * length)
        sigma = rng.uniform(0.5, 1.5) * max(scale, 0.7)
        contrast = rng.uniform(30, 85) * (1 if rng.random() < 0.6 else -1)
        bend = rng.uniform(-1, 1) * min(length * 0.02, 6 * scale)
        half_w = 4 * sigma + abs(bend) + 1
        ys = np.array([cy - dy * length / 2, cy + dy * length / 2])
        xs = np.array([cx - dx * length / 2, cx + dx * length / 2])
        y0, y1 = int(max(ys.min() - half_w, 0)), int(min(ys.max() + half_w + 1, height))
        x0, x1 = int(max(xs.min() - half_w, 0)), int(min(xs.max() + half_w + 1, bw))
        if y1 <= y0 or x1 <= x0:
            continue
        py = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        px = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        t = (px * dx + py * dy) / length  # -0.5 .. 0.5 along the scratch
        d = px * -dy + py * dx - bend * (1 - 4 * t * t)
        fade = np.clip((0.5 - np.abs(t)) / rng.uniform(0.05, 0.2), 0, 1)
        wobble = 0.65 + 0.35 * np.sin(2 * np.pi * (t * rng.uniform(1, 6) + rng.random()))
        line = contrast * fade * wobble * np.exp(-0.5 * (d / sigma) ** 2)
        region = delta[y0:y1, x0:x1]
        delta[y0:y1, x0:x1] = np.where(np.abs(line) > np.abs(region), line, region)
    return (0, height, bx0, bx1), delta


def _patches(rng: np.random.Generator, height: int, band: tuple[int, int],
             scale: float) -> tuple[Box, np.ndarray]:
    """An irregular blotchy area, darker (mostly) or brighter, with a mottled inside."""
    box = _place(rng, rng.uniform(40, 190) * scale, rng.uniform(70, 460) * scale, height, band)
    h, w = box[1] - box[0], box[3] - box[2]
    ny = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    nx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    envelope = 1.0 - (ny * ny + nx * nx)
    shape = (0.5 * _smooth_noise(rng, h, w, 3, max(3, w // max(h, 1) * 3))
             + 0.22 * _smooth_noise(rng, h, w, 7, 14))
    # the noise fades out towards the box edges, so the blob never touches them
    field = envelope + shape * np.sqrt(np.clip(envelope, 0.0, 1.0))
    blob = np.clip((field - rng.uniform(0.15, 0.4)) / rng.uniform(0.2, 0.45), 0.0, 1.0)
    blob = blob * blob * (3 - 2 * blob)
    mottle = 0.72 + 0.28 * np.tanh(
        _smooth_noise(rng, h, w, max(2, h // 14), max(2, w // 14))
        + 0.5 * _smooth_noise(rng, h, w, max(2, h // 5), max(2, w // 5)))
    contrast = rng.uniform(22, 55) * (-1 if rng.random() < 0.7 else 1)
    return box, contrast * blob * mottle


RENDERERS: dict[str, Renderer] = {
    "pitted_surface": _pitted_surface,
    "crazing": _crazing,
    "scratches": _scratches,
    "patches": _patches,
}


# --------------------------------------------------------------------------- generator


class SteelStripGenerator:
    """Synthetic rolled-steel strips, good or with known defects, deterministic per index."""

    def __init__(self, size: tuple[int, int] = (256, 1600), seed: int = 0) -> None:
        height, width = int(size[0]), int(size[1])
        if height < 16 or width < 16:
            raise ValueError(f"strip size must be at least 16x16, got {size}")
        self.size = (height, width)
        self.seed = int(seed)
        self.scale = min(height / 256.0, width / 256.0, 1.5)

    def _rng(self, stream: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, int(index)])

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """Float HxW gray texture of a defect-free rolled strip."""
        h, w = self.size
        level = rng.uniform(85, 145)
        # rolling streaks: per-row offsets that drift slowly along x (coarse + fine)
        coarse_x, fine_x = max(2, w // 60), max(2, w // 12)
        rows = rng.uniform(2.5, 6.0) * _interp_axis(
            rng.standard_normal((h, coarse_x), dtype=np.float32), fine_x, 1)
        rows += rng.uniform(1.0, 3.0) * rng.standard_normal((h, fine_x), dtype=np.float32)
        streaks = _interp_axis(rows, w, 1)
        # low-frequency brightness waves (blotchy light + periodic waves along the strip)
        waves = rng.uniform(3, 8) * _smooth_noise(rng, h, w, 2, max(2, w // 200))
        period = rng.uniform(150, 700) * max(self.scale, 0.3)
        x = np.arange(w, dtype=np.float32)[None, :]
        y = np.arange(h, dtype=np.float32)[:, None]
        waves += rng.uniform(1.0, 3.5) * np.sin(2 * np.pi * (x + rng.uniform(-0.3, 0.3) * y)
                                              / period + rng.uniform(0, 2 * np.pi))
        # slight vignetting: darker towards the strip edges (rows) and the strip ends
        vy = 1 - rng.uniform(0.06, 0.16) * ((y - h / 2) / (h / 2)) ** 2
        vx = 1 - rng.uniform(0.02, 0.08) * ((x - w / 2) / (w / 2)) ** 4
        grain = rng.standard_normal((h, w), dtype=np.float32)
        grain = (grain + np.roll(grain, 1, axis=1)) * (rng.uniform(2.5, 5.0) / np.sqrt(2))
        return (level + streaks + waves) * (vy * vx) + grain

    def good(self, index: int) -> SyntheticStrip:
        """A defect-free strip."""
        rng = self._rng(_GOOD_STREAM, index)
        image = _to_rgb(_quantise(self._background(rng)))
        return SyntheticStrip(image=image, masks={}, labels=(), name=f"good_{index:05d}",
                              clean=image)

    def defective(self, index: int, labels: tuple[str, ...] | list[str] | None = None
                  ) -> SyntheticStrip:
        """A strip with the given defect families (default: family ``index % 4``, sometimes
        plus a second one), each in its own band of columns."""
        rng = self._rng(_DEFECT_STREAM, index)
        background = self._background(rng)
        if labels is None:
            first = DEFECT_CLASSES[index % len(DEFECT_CLASSES)]
            chosen = [first]
            if rng.random() < 0.25:
                others = [c for c in DEFECT_CLASSES if c != first]
                chosen.append(others[int(rng.integers(len(others)))])
        else:
            chosen = list(dict.fromkeys(labels))
            unknown = set(chosen) - set(DEFECT_CLASSES)
            if unknown or not chosen:
                raise ValueError(f"labels must be a non-empty subset of {DEFECT_CLASSES}")
        h, w = self.size
        edges = np.linspace(0, w, len(chosen) + 1).round().astype(int)
        order = rng.permutation(len(chosen))
        image = background.copy()
        rendered: list[tuple[str, Box, np.ndarray]] = []
        for slot, label in zip(order, chosen, strict=True):
            box, delta = RENDERERS[label](rng, h, (int(edges[slot]), int(edges[slot + 1])),
                                          self.scale)
            delta = np.where(np.abs(delta) >= CONTRAST_THRESHOLD, delta, 0).astype(np.float32)
            y0, y1, x0, x1 = box
            image[y0:y1, x0:x1] += delta
            rendered.append((label, box, delta))
        clean = _quantise(background)
        altered_img = _quantise(image)
        altered = np.abs(altered_img.astype(np.int16) - clean) >= CONTRAST_THRESHOLD
        masks: dict[str, np.ndarray] = {}
        for label, (y0, y1, x0, x1), delta in rendered:
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = (delta != 0) & altered[y0:y1, x0:x1]
            masks[label] = mask
        union = np.logical_or.reduce(list(masks.values()))
        altered_img[~union] = clean[~union]
        return SyntheticStrip(image=_to_rgb(altered_img), masks=masks, labels=tuple(chosen),
                              name=f"defect_{index:05d}", clean=_to_rgb(clean))

    def samples(self, n_good: int, n_defective: int) -> list[Sample]:
        """In-memory samples (image + masks_inline); the group is the strip's name."""
        strips = [self.good(i) for i in range(n_good)]
        strips += [self.defective(i) for i in range(n_defective)]
        return [Sample(labels=s.labels, image=s.image, masks_inline=s.masks, group=s.name,
                       meta={"name": s.name, "source": "synthetic", "seed": self.seed})
                for s in strips]


def _quantise(gray: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def class_index_mask(masks: dict[str, np.ndarray], shape: tuple[int, int],
                     classes: tuple[str, ...] = DEFECT_CLASSES) -> np.ndarray:
    """Bool masks per label -> uint8 mask with 0 = background, i + 1 = ``classes[i]``."""
    out = np.zeros(shape, np.uint8)
    for label, mask in masks.items():
        out[mask] = classes.index(label) + 1
    return out


def write_dataset(out: str | Path, n_good: int = 20, n_defective: int = 20,
                  size: tuple[int, int] = (256, 1600), seed: int = 0) -> Path:
    """Write strips in the ``masks`` layout: ``images/<name>.png`` (grayscale),
    ``masks/<name>.png`` (class-indexed, 0 = background, all zero for good strips) and
    ``classes.txt`` (one name per line in index order, line 0 = background)."""
    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / CLASSES_FILE).write_text("\n".join((BACKGROUND, *DEFECT_CLASSES)) + "\n")
    gen = SteelStripGenerator(size=size, seed=seed)
    jobs = [(gen.good, i) for i in range(n_good)] + [(gen.defective, i)
                                                     for i in range(n_defective)]
    for make, i in tqdm(jobs, desc="synthetic strips", unit="img", disable=len(jobs) < 50):
        strip = make(i)
        Image.fromarray(strip.image[:, :, 0]).save(root / "images" / f"{strip.name}.png")
        index_mask = class_index_mask(strip.masks, gen.size)
        Image.fromarray(index_mask).save(root / "masks" / f"{strip.name}.png")
    return root


PREVIEW_COLORS = {"pitted_surface": (255, 80, 80), "crazing": (80, 200, 255),
                  "scratches": (255, 220, 0), "patches": (120, 255, 120)}


def preview_grid(path: str | Path, seed: int = 0, size: tuple[int, int] = (256, 1600),
                 per_family: int = 2) -> Path:
    """Save a PNG with one good strip and ``per_family`` strips of each defect family,
    defect masks outlined in colour (one colour per family) next to the plain strip."""
    from PIL import ImageDraw
    from skimage.segmentation import find_boundaries

    gen = SteelStripGenerator(size=size, seed=seed)
    strips = [gen.good(0)] + [gen.defective(i * len(DEFECT_CLASSES) + k, labels=(label,))
                              for k, label in enumerate(DEFECT_CLASSES)
                              for i in range(per_family)]
    h, w = gen.size
    gap, title = 6, 16
    sheet = Image.new("RGB", (2 * w + gap, len(strips) * (h + title + gap)), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    for row, strip in enumerate(strips):
        top = row * (h + title + gap)
        outlined = strip.image.copy()
        for label, mask in strip.masks.items():
            outlined[find_boundaries(mask, mode="outer")] = PREVIEW_COLORS[label]
        sheet.paste(Image.fromarray(strip.image), (0, top + title))
        sheet.paste(Image.fromarray(outlined), (w + gap, top + title))
        text = ", ".join(strip.labels) or "good"
        draw.text((4, top + 2), f"{strip.name}: {text}", fill=(230, 230, 230))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
