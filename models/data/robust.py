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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

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


class PoseCopies(Sequence[np.ndarray]):
    """``images`` followed by ``copies`` random pose copies of each, made when read (so a fit
    on large photos does not hold them all at once): copy ``j`` of image ``i`` is the same
    every time it is read, drawn from the protocol's ranges with a seed of its own."""

    def __init__(self, images: Sequence[np.ndarray], copies: int, seed: int = 0) -> None:
        self.images, self.copies, self.seed = images, copies, seed

    def __len__(self) -> int:
        return len(self.images) * (1 + self.copies)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        n = len(self.images)
        if index < n:
            return self.images[index]
        source = (index - n) // self.copies
        seed = (self.seed * 1_000_003 + index) % 2**32
        return random_pose(seed)(image=self.images[source])["image"]
