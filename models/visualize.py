"""Overlays a person can read at a glance: masks per label, anomaly heatmaps, Grad-CAM, boxes.

Heatmaps are always drawn on the detection's fixed, calibrated ``map_range`` (never per-image
min-max): values at or below ``low`` (a typical good pixel) are fully transparent and the colour
saturates at ``high`` (the pixel threshold), so a good part stays calm and a defect glows.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from kensa.models.types import Detection

LAYERS = ("masks", "heatmap", "gradcam", "boxes")
"""Every layer ``render_overlay`` knows; the default draws them all."""

LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "pitted_surface": (230, 159, 0),  # orange
    "crazing": (86, 180, 233),  # sky blue
    "scratches": (0, 158, 115),  # bluish green
    "patches": (204, 121, 167),  # reddish purple
    "anomaly": (213, 94, 0),  # vermilion
}
"""Fixed colours (Okabe-Ito, colour-blind safe) for the Severstal families and 'anomaly'."""

HEATMAP_CMAP = "inferno"
HEATMAP_MAX_ALPHA = 0.45
MASK_ALPHA = 0.18
GRADCAM_MAX_ALPHA = 0.5


def label_color(label: str) -> tuple[int, int, int]:
    """The label's fixed colour, or a stable hashed hue for labels without one."""
    if label in LABEL_COLORS:
        return LABEL_COLORS[label]
    digest = hashlib.sha256(label.encode()).digest()
    hue = digest[0] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65 + digest[1] / 255.0 * 0.3, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


def normalize_map(values: np.ndarray, map_range: tuple[float, float]) -> np.ndarray:
    """Map raw scores onto [0, 1] on the fixed range: ``low`` -> 0, ``high`` -> 1 (clipped)."""
    low, high = map_range
    span = max(float(high) - float(low), 1e-12)
    return np.clip((values.astype(np.float32) - float(low)) / span, 0.0, 1.0)


def _blend(base: np.ndarray, color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``color`` (a colour, or HxWx3) over float ``base`` in place, per-pixel
    ``alpha`` (HxW); pixels with zero alpha are skipped, so calm images cost little."""
    where = alpha > 0
    if not where.any():
        return base
    a = alpha[where][:, None].astype(np.float32)
    c = color[where] if color.ndim == 3 else color
    base[where] = base[where] * (1.0 - a) + c * a
    return base


def _fit(array: np.ndarray, shape: tuple[int, int], resample=Image.BILINEAR) -> np.ndarray:
    if array.shape[:2] == shape:
        return array
    if array.dtype == bool:
        img = Image.fromarray(array.astype(np.uint8) * 255)
        return np.asarray(img.resize((shape[1], shape[0]), Image.NEAREST)) > 127
    img = Image.fromarray(array.astype(np.float32))
    return np.asarray(img.resize((shape[1], shape[0]), resample))


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, iterations=max(1, width), border_value=0)
    return mask & ~eroded


def render_overlay(
    image: np.ndarray | Image.Image,
    detections: Sequence[Detection],
    layers: Iterable[str] = LAYERS,
) -> Image.Image:
    """The photo with the chosen evidence layers of ``detections`` drawn over it (RGB)."""
    layers = set(layers)
    unknown = layers - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown overlay layers {sorted(unknown)}; known: {list(LAYERS)}")
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    height, width = rgb.shape[:2]
    canvas = rgb.astype(np.float32)

    if "heatmap" in layers:
        cmap = colormaps[HEATMAP_CMAP]
        for det in detections:
            if det.anomaly_map is None:
                continue
            t = normalize_map(_fit(det.anomaly_map, (height, width)), det.map_range or (0.0, 1.0))
            where = t > 0
            colors = np.zeros((height, width, 3), np.float32)
            colors[where] = cmap(0.25 + 0.75 * t[where])[:, :3] * 255.0
            canvas = _blend(canvas, colors, HEATMAP_MAX_ALPHA * t**1.5)

    if "gradcam" in layers:
        for det in detections:
            for label, heat in det.heatmaps.items():
                h = np.clip(_fit(heat, (height, width)), 0.0, 1.0)
                color = np.asarray(label_color(label), dtype=np.float32)
                canvas = _blend(canvas, color, GRADCAM_MAX_ALPHA * h**2)

    line = max(1, round(min(height, width) / 200))
    if "masks" in layers:
        for det in detections:
            for finding in det.findings:
                if finding.mask is None or not finding.mask.any():
                    continue
                mask = _fit(finding.mask, (height, width))
                color = np.asarray(label_color(finding.label), dtype=np.float32)
                canvas = _blend(canvas, color, mask * MASK_ALPHA)
                canvas[_outline(mask, line)] = color

    out = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    if "boxes" in layers:
        draw = ImageDraw.Draw(out)
        font = _font(max(11, min(height, width) // 16))
        for det in detections:
            for finding in det.findings:
                if finding.bbox is None:
                    continue
                color = label_color(finding.label)
                x0, y0, x1, y1 = finding.bbox
                draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=color, width=line)
                text = f"{finding.label} {finding.score:.2f}"
                left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
                tw, th = right - left, bottom - top
                ty = y0 - th - 2 * line if y0 - th - 2 * line >= 0 else min(y1, height - th - 2)
                tx = min(max(0, x0), max(0, width - tw - 2))
                draw.rectangle((tx, ty, tx + tw + 2, ty + th + 2), fill=color)
                draw.text((tx + 1 - left, ty + 1 - top), text, fill=(0, 0, 0), font=font)
    return out
