"""Validating and decoding uploaded photos: every failure becomes a clear ``ImageRejected``."""

from __future__ import annotations

from kensa.models.imaging import FORMATS, DecodedImage, ImageDecodeError
from kensa.models.imaging import decode_image as decode_photo

__all__ = ["DecodedImage", "ImageRejected", "check_declared_type", "decode_image"]
STATUS = {"empty": 422, "corrupt": 422, "too_small": 422, "unsupported": 415, "too_large": 413}

ACCEPTED_CONTENT_TYPES = {ct for ct, _ in FORMATS.values()} | {
    "image/jpg", "image/pjpeg", "image/x-ms-bmp", "image/x-png", "application/octet-stream",
}


class ImageRejected(Exception):
    """An upload that cannot be inspected, with the HTTP status that says why."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def check_declared_type(content_type: str | None) -> None:
    """415 unless the part claims to be an image (or says nothing specific)."""
    base = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if base not in ACCEPTED_CONTENT_TYPES and not base.startswith("image/"):
        raise ImageRejected(415, f"unsupported content type {base!r}; send a JPEG, PNG, BMP, "
                                 "TIFF or WebP image")


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Fully decode and verify ``data`` with the one decoder of ``kensa.models.imaging``.

    422 empty, too small or truncated/corrupt image; 415 not an image in a supported format;
    413 more than ``max_pixels`` pixels (decompression bomb), checked before decoding.
    """
    try:
        return decode_photo(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise ImageRejected(STATUS[exc.reason], exc.detail) from None
