"""Pose changes for seed 001's robustness protocol and its NF+DA training augmentation.

The paper scores each test image plus two rotated, two shifted and two scaled copies of it
(six copies per image) but does not give the magnitudes; ours are fixed and deterministic:

- rotation by -10 and +10 degrees about the centre,
- shift by (+8 %, +8 %) and (-8 %, -8 %) of the width and height,
- scale by 0.9 and 1.1 about the centre.

Borders are filled by reflection (so a good part stays a good part: the protocol measures pose
robustness, not padding artefacts); masks move with the image (nearest-neighbour, zero fill).
The training augmentation draws from the same ranges at random.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

ROTATE_DEG = 10.0
SHIFT_FRACTION = 0.08
SCALE_FACTORS = (0.9, 1.1)


@dataclass(frozen=True)
class PoseChange:
    """One fixed affine change of the protocol."""

    name: str
    rotate: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)  # fraction of (width, height)
    scale: float = 1.0

    def transform(self) -> A.Affine:
        return A.Affine(
            rotate=(self.rotate, self.rotate),
            translate_percent={"x": (self.shift[0],) * 2, "y": (self.shift[1],) * 2},
            scale=(self.scale, self.scale),
            border_mode=cv2.BORDER_REFLECT_101, interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST, fill_mask=0, p=1.0,
        )

    def apply(self, image: np.ndarray, mask: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """The changed image (and mask, moved identically)."""
        if mask is None:
            return self.transform()(image=image)["image"], None
        out = self.transform()(image=image, mask=mask.astype(np.uint8))
        return out["image"], out["mask"].astype(bool)


POSE_CHANGES: tuple[PoseChange, ...] = (
    PoseChange("rotate-10", rotate=-ROTATE_DEG),
    PoseChange("rotate+10", rotate=ROTATE_DEG),
    PoseChange("shift+8%", shift=(SHIFT_FRACTION, SHIFT_FRACTION)),
    PoseChange("shift-8%", shift=(-SHIFT_FRACTION, -SHIFT_FRACTION)),
    PoseChange("scale0.9", scale=SCALE_FACTORS[0]),
    PoseChange("scale1.1", scale=SCALE_FACTORS[1]),
)


def pose_copies(image: np.ndarray, mask: np.ndarray | None = None
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """The six protocol copies of an image (and its mask)."""
    for change in POSE_CHANGES:
        changed, changed_mask = change.apply(image, mask)
        yield change.name, changed, changed_mask


def random_pose(seed: int | None = None) -> A.Compose:
    """Training augmentation over the protocol's ranges (seed 001's NF+DA)."""
    transform = A.Compose([A.Affine(
        rotate=(-ROTATE_DEG, ROTATE_DEG),
        translate_percent={"x": (-SHIFT_FRACTION, SHIFT_FRACTION),
                           "y": (-SHIFT_FRACTION, SHIFT_FRACTION)},
        scale=SCALE_FACTORS, border_mode=cv2.BORDER_REFLECT_101, p=1.0,
    )])
    if seed is not None:
        transform.set_random_seed(seed)
    return transform


def describe_protocol() -> dict[str, object]:
    """What the robust metrics were measured on, for reports."""
    return {
        "copies_per_image": len(POSE_CHANGES),
        "changes": [c.name for c in POSE_CHANGES],
        "border": "reflect-101", "masks": "moved identically (nearest)",
    }
