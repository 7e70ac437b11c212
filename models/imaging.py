"""Image decoding and tensor conversion shared by detectors, data loaders and the service."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def read_rgb(source: str | Path | bytes | Image.Image) -> np.ndarray:
    """Decode a file, bytes or PIL image into an HxWx3 uint8 RGB array (grayscale is repeated)."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, bytes | bytearray):
        image = Image.open(BytesIO(source))
    else:
        image = Image.open(source)
    image.load()
    return np.asarray(image.convert("RGB"))


def to_tensor(images: np.ndarray | list[np.ndarray], size: tuple[int, int],
              mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """HxWx3 uint8 image(s) -> normalised float tensor Bx3xHxW resized to ``size`` (H, W)."""
    batch = images if isinstance(images, list) else [images]
    tensors = []
    for image in batch:
        array = np.ascontiguousarray(image)
        if not array.flags.writeable:  # torch refuses to share read-only memory
            array = array.copy()
        t = torch.from_numpy(array).permute(2, 0, 1).float().div_(255)
        if t.shape[1:] != size:
            t = F.interpolate(t[None], size=size, mode="bilinear", align_corners=False,
                              antialias=True)[0]
        tensors.append(t)
    x = torch.stack(tensors)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def resize_map(score_map: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A HxW float map resized bilinearly to ``size`` (H, W) as float32 numpy."""
    t = torch.as_tensor(score_map, dtype=torch.float32)
    out = F.interpolate(t[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return out.numpy()


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
