"""One training or evaluation example, independent of the layout it came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kensa.models.imaging import read_rgb

MaskLoader = Callable[[int, int], dict[str, np.ndarray]]
"""Given the image (height, width), return a bool mask per defect label present."""


@dataclass
class Sample:
    """An image with its defect labels (empty = good) and, where known, its masks.

    Exactly one of ``path`` and ``image`` is set; ``image`` is for in-memory data
    (the synthetic generator, tests).
    """

    labels: tuple[str, ...] = ()
    path: Path | None = None
    image: np.ndarray | None = None
    mask_loader: MaskLoader | None = None
    masks_inline: dict[str, np.ndarray] | None = None
    split: str | None = None
    group: str | None = None  # samples sharing a group never straddle splits (e.g. base image)
    meta: dict = field(default_factory=dict)

    @property
    def is_good(self) -> bool:
        return not self.labels

    @property
    def has_masks(self) -> bool:
        return self.mask_loader is not None or self.masks_inline is not None

    @property
    def name(self) -> str:
        return self.path.name if self.path else str(self.meta.get("name", "in-memory"))

    def load_image(self) -> np.ndarray:
        """HxWx3 uint8 RGB."""
        if self.image is not None:
            return self.image
        if self.path is None:
            raise ValueError("sample has neither a path nor an image")
        return read_rgb(self.path)

    def load_masks(self, height: int, width: int) -> dict[str, np.ndarray]:
        """Bool HxW mask per label; empty dict for a good sample or one without masks."""
        if self.masks_inline is not None:
            return self.masks_inline
        if self.mask_loader is None:
            return {}
        return self.mask_loader(height, width)

    def union_mask(self, height: int, width: int) -> np.ndarray:
        """Every defect pixel of the sample, whatever its label."""
        out = np.zeros((height, width), dtype=bool)
        for mask in self.load_masks(height, width).values():
            out |= mask
        return out
