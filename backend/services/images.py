"""Validating and decoding uploaded photos: every failure becomes a clear ``ImageRejected``."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

FORMATS = {  # PIL format -> (content type, blob suffix)
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "BMP": ("image/bmp", "bmp"),
    "TIFF": ("image/tiff", "tif"),
    "WEBP": ("image/webp", "webp"),
}
ACCEPTED_CONTENT_TYPES = {ct for ct, _ in FORMATS.values()} | {
    "image/jpg", "image/pjpeg", "image/x-ms-bmp", "image/x-png", "application/octet-stream",
}


class ImageRejected(Exception):
    """An upload that cannot be inspected, with the HTTP status that says why."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass
class DecodedImage:
    rgb: np.ndarray  # HxWx3 uint8, EXIF orientation applied
    content_type: str
    suffix: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def check_declared_type(content_type: str | None) -> None:
    """415 unless the part claims to be an image (or says nothing specific)."""
    base = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if base not in ACCEPTED_CONTENT_TYPES and not base.startswith("image/"):
        raise ImageRejected(415, f"unsupported content type {base!r}; send a JPEG, PNG, BMP, "
                                 "TIFF or WebP image")


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Fully decode and verify ``data``.

    422 empty or truncated/corrupt image; 415 not an image in a supported format;
    413 more than ``max_pixels`` pixels (decompression bomb), checked before decoding.
    """
    if not data:
        raise ImageRejected(422, "the uploaded file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            probe = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageRejected(413, f"image has too many pixels: {exc}") from None
        except Image.DecompressionBombWarning:
            raise ImageRejected(413, "image has too many pixels") from None
        except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ImageRejected(415, "the file is not an image in a supported format "
                                     "(JPEG, PNG, BMP, TIFF, WebP)") from None
        if probe.format not in FORMATS:
            raise ImageRejected(415, f"unsupported image format {probe.format!r}; send JPEG, "
                                     "PNG, BMP, TIFF or WebP")
        width, height = probe.size
        if width * height > max_pixels:
            raise ImageRejected(413, f"image is {width}x{height} = {width * height} pixels; "
                                     f"the limit is {max_pixels}")
        if width < 8 or height < 8:
            raise ImageRejected(422, f"image is too small to inspect ({width}x{height})")
        content_type, suffix = FORMATS[probe.format]
        try:
            probe.verify()  # structural checks (PNG CRCs, ...)
            image = Image.open(io.BytesIO(data))
            image.load()  # full decode: truncated data raises here
            image = ImageOps.exif_transpose(image)
            rgb = np.array(image.convert("RGB"))
        except Image.DecompressionBombError:
            raise ImageRejected(413, "image has too many pixels") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(422, f"the image is truncated or corrupt: {exc}") from None
    return DecodedImage(rgb=rgb, content_type=content_type, suffix=suffix)
