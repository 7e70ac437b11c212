"""Augmentation pipelines (albumentations) and the resizing shared by training and inference.

Steel defects have a direction, so the defaults are flips only; rotation is added only when
asked for (seed 003). Images are resized with the same antialiased bilinear filter that
``models.imaging.to_tensor`` uses at inference, so training and serving see the same pixels.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> ``size`` (H, W) uint8, antialiased bilinear like ``to_tensor``."""
    if tuple(image.shape[:2]) == tuple(size):
        return np.ascontiguousarray(image)
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool HxW -> bool ``size``: a pixel is set when at least 30 % of its area was (keeps
    thin scratches that nearest-neighbour sampling would drop)."""
    if tuple(mask.shape) == tuple(size):
        return mask.astype(bool)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.interpolate(t, size=size, mode="area" if t.shape[-1] >= size[1] else "bilinear")
    return (t[0, 0] >= 0.3).numpy()


def aspect_kept_size(shape: tuple[int, int], short_side: int = 256,
                     multiple: int = 32) -> tuple[int, int]:
    """An input size with the image's aspect ratio, short side ~``short_side``, sides rounded
    to ``multiple`` (U-Net needs multiples of 32): 256x1600 stays 256x1600."""
    height, width = shape
    scale = short_side / min(height, width)
    return tuple(max(multiple, round(s * scale / multiple) * multiple)
                 for s in (height, width))  # type: ignore[return-value]


def train_transform(*, hflip: bool = True, vflip: bool = True, rotate: float = 0.0,
                    photometric: bool = True, seed: int | None = None) -> A.Compose:
    """Augmentation applied to images already at input size (masks follow geometry);
    seeded, so a training run repeats exactly."""
    steps: list[A.BasicTransform] = []
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if vflip:
        steps.append(A.VerticalFlip(p=0.5))
    if rotate > 0:
        steps.append(A.Affine(rotate=(-rotate, rotate), border_mode=cv2.BORDER_REFLECT_101,
                              p=0.5))
    if photometric:
        steps.append(A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1,
                                                p=0.3))
    return A.Compose(steps, seed=seed)

