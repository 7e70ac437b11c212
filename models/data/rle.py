"""Run-length encoding exactly as the Kaggle Severstal competition writes ``EncodedPixels``.

Pixels are numbered column-major (top to bottom, then left to right) starting at 1; the
string is space-separated ``start length`` pairs. An empty string (or NaN in pandas) is an
empty mask.
"""

from __future__ import annotations

import numpy as np


def rle_decode(rle: str | float | None, shape: tuple[int, int]) -> np.ndarray:
    """``"start length ..."`` -> bool mask of ``shape`` (height, width)."""
    height, width = shape
    flat = np.zeros(height * width, dtype=bool)
    if rle is None or isinstance(rle, float) or not str(rle).strip():
        return flat.reshape(width, height).T
    numbers = np.asarray(str(rle).split(), dtype=np.int64)
    if numbers.size % 2:
        raise ValueError("RLE needs an even number of values (start length pairs)")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    if (starts < 0).any() or (lengths < 0).any() or (starts + lengths > flat.size).any():
        raise ValueError(f"RLE runs fall outside a {height}x{width} mask")
    for start, length in zip(starts, lengths, strict=True):
        flat[start:start + length] = True
    return flat.reshape(width, height).T


def rle_encode(mask: np.ndarray) -> str:
    """Bool (or 0/1) HxW mask -> Kaggle RLE string; ``""`` for an empty mask."""
    pixels = np.asarray(mask, dtype=bool).T.ravel()
    padded = np.concatenate([[False], pixels, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    changes[1::2] -= changes[0::2]
    return " ".join(str(int(v)) for v in changes)
