"""Photo files the decoder tests write themselves: 16-bit PNGs and EXIF-rotated JPEGs."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def save(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (gray or RGB) written by hand: Pillow cannot write 48-bit RGB."""
    arr = np.asarray(arr, np.uint16)
    h, w = arr.shape[:2]
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if arr.ndim == 3 else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def arrow(h: int = 48, w: int = 32) -> np.ndarray:
    """A picture with an obvious up: a red bar at the top, a blue block bottom-left."""
    img = np.full((h, w, 3), 90, np.uint8)
    img[:6] = (230, 20, 20)
    img[-12:, :10] = (20, 20, 230)
    return img


def rotated_jpeg(upright: np.ndarray) -> bytes:
    """Stored turned 90° clockwise-back with Orientation=6, as a phone saves a portrait."""
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(stored, "JPEG", quality=98, exif=exif)
