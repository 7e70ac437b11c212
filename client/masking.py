"""The defect mask a reviewer paints on the Review screen: brush and eraser strokes on a mask
at the photo's own size, starting from the machine's masks when it drew any.

Strokes arrive in the coordinates of the painting area (the photo shown with
``BoxFit.CONTAIN``); :func:`to_photo` maps them back to photo pixels. The mask is sent as a PNG
of exactly the photo's size (non-zero = defect), what ``POST /inspections/{id}/review`` takes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from PIL import Image, ImageChops, ImageDraw

Point = tuple[float, float]
BRUSH_SIZES = {"S": 6.0, "M": 14.0, "L": 28.0}  # brush radius in screen pixels
UNDO_DEPTH = 20
PREVIEW_SIDE = 1200  # the longest side of the overlay the screen shows
PREVIEW_RGBA = (255, 23, 68, 140)  # the painted mask as shown: translucent red


def fit_scale(view: tuple[float, float], photo: tuple[int, int]) -> tuple[float, float, float]:
    """``(scale, left, top)`` of a ``photo`` (w, h) drawn with ``BoxFit.CONTAIN`` in ``view``."""
    (vw, vh), (pw, ph) = view, photo
    scale = min(vw / pw, vh / ph)
    return scale, (vw - pw * scale) / 2, (vh - ph * scale) / 2


def to_photo(point: Point, view: tuple[float, float], photo: tuple[int, int]) -> Point:
    """A point of the painting area in photo pixels (may lie outside the photo)."""
    scale, left, top = fit_scale(view, photo)
    return (point[0] - left) / scale, (point[1] - top) / scale


class MaskDraft:
    """A mask being painted: ``L`` mode, 255 = defect, at the photo's size; with undo."""

    def __init__(self, width: int, height: int, start: Image.Image | None = None) -> None:
        self.size = (width, height)
        self.mask = start.convert("L") if start is not None else Image.new("L", self.size, 0)
        self._undo: list[Image.Image] = []
        self.edited = False  # a stroke, clear or undo happened

    @classmethod
    def from_pngs(cls, width: int, height: int, pngs: Iterable[bytes]) -> MaskDraft:
        """Start from the union of the machine's finding masks (PNGs at the photo's size;
        unreadable or differently sized ones are left out)."""
        union = Image.new("L", (width, height), 0)
        for data in pngs:
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except (OSError, SyntaxError, ValueError):
                continue
            if image.size != (width, height):
                continue
            union = ImageChops.lighter(union, image.convert("L").point(lambda v: 255 if v
                                                                       else 0))
        return cls(width, height, union)

    def _remember(self) -> None:
        self._undo = [*self._undo[-(UNDO_DEPTH - 1):], self.mask.copy()]
        self.edited = True

    def stroke(self, points: Sequence[Point], radius: float, erase: bool = False) -> None:
        """Paint (or erase) a stroke through ``points`` (photo pixels), ``radius`` wide."""
        if not points:
            return
        self._remember()
        draw = ImageDraw.Draw(self.mask)
        fill = 0 if erase else 255
        r = max(radius, 0.5)
        flat = [(round(x), round(y)) for x, y in points]
        if len(flat) > 1:
            draw.line(flat, fill=fill, width=round(2 * r) + 1)
        for x, y in flat:  # round ends and joints
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)

    def clear(self) -> None:
        self._remember()
        self.mask = Image.new("L", self.size, 0)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self.mask = self._undo.pop()
        self.edited = True
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def painted(self) -> int:
        """How many photo pixels are marked."""
        return int(self.mask.histogram()[255])

    def png(self) -> bytes | None:
        """The mask as a 1-bit PNG at the photo's size, or None when nothing is marked."""
        if not self.painted():
            return None
        buffer = io.BytesIO()
        self.mask.convert("1").save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def preview_png(self, side: int = PREVIEW_SIDE) -> bytes:
        """What the screen lays over the photo: the mask in translucent red, transparent
        elsewhere, at most ``side`` pixels on its longest side (same shape as the photo)."""
        mask = self.mask
        scale = min(1.0, side / max(self.size))
        if scale < 1.0:
            mask = mask.resize((max(1, round(self.size[0] * scale)),
                                max(1, round(self.size[1] * scale))), Image.Resampling.NEAREST)
        overlay = Image.new("RGBA", mask.size, PREVIEW_RGBA)
        overlay.putalpha(mask.point(lambda v: PREVIEW_RGBA[3] if v else 0))
        buffer = io.BytesIO()
        overlay.save(buffer, format="PNG")
        return buffer.getvalue()
