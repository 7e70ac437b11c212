"""The one photo decoder (:func:`decode_image`) and tensor conversion shared by detectors,
data loaders and the service."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


FORMATS = {  # PIL format -> (content type, file suffix)
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "BMP": ("image/bmp", "bmp"),
    "TIFF": ("image/tiff", "tif"),
    "WEBP": ("image/webp", "webp"),
}
MIN_SIDE = 8
DecodeReason = Literal["empty", "unsupported", "too_large", "too_small", "corrupt"]
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


class ImageDecodeError(ValueError):
    """A photo that cannot be decoded; ``reason`` is one of :data:`DecodeReason`."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: DecodeReason = reason
        self.detail = detail


@dataclass
class DecodedImage:
    """An upright HxWx3 uint8 RGB photo and what it was stored as (None for in-memory
    images without a format)."""

    rgb: np.ndarray
    format: str | None
    content_type: str | None
    suffix: str | None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def decode_image(source: str | Path | bytes | Image.Image, max_pixels: int | None = None,
                 min_side: int = MIN_SIDE) -> DecodedImage:
    """The one photo decoder of kensa (training, ``kensa predict``/``eval``, the service).

    EXIF orientation is applied. Alpha is dropped (colour kept as captured: a camera's alpha
    carries no surface information). 16-bit data (I;16*, 48-bit RGB PNG/TIFF) is scaled to 8
    bits by value/257, rounded; 32-bit ``I`` by its real bit depth (PNG: 16, TIFF:
    BitsPerSample; unknown: 16 when every value fits, else 32); ``F`` by its range ([0, 1],
    [0, 255], [0, 65535], else min-max). ``max_pixels`` (default Pillow's bomb limit) is
    checked from the header, before the full decode.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, Image.Image):
        return _finish(source, limit, min_side, data=None, deep=False)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageDecodeError("corrupt", f"cannot read {source}: {exc}") from None
    if not data:
        raise ImageDecodeError("empty", "the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error" if limit <= (Image.MAX_IMAGE_PIXELS or 0) else "ignore",
                              Image.DecompressionBombWarning)
        try:
            probe = Image.open(BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError("too_large", f"image has too many pixels: {exc}") from None
        except Image.DecompressionBombWarning:
            raise ImageDecodeError("too_large", "image has too many pixels") from None
        except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ImageDecodeError("unsupported", "not an image in a supported format "
                                   "(JPEG, PNG, BMP, TIFF, WebP)") from None
        if probe.format not in FORMATS:
            raise ImageDecodeError("unsupported", f"unsupported image format {probe.format!r}; "
                                   "send JPEG, PNG, BMP, TIFF or WebP")
        _check_size(probe.size, limit, min_side)
        try:
            probe.verify()  # structural checks (PNG CRCs, ...)
            image = Image.open(BytesIO(data))
            deep = _is_16bit_colour(image)  # from the tile list, which load() clears
            image.load()  # full decode: truncated data raises here
            return _finish(image, limit, min_side, data=data, deep=deep)
        except Image.DecompressionBombError:
            raise ImageDecodeError("too_large", "image has too many pixels") from None
        except ImageDecodeError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError("corrupt", f"the image is truncated or corrupt: {exc}"
                                   ) from None


def read_rgb(source: str | Path | bytes | Image.Image) -> np.ndarray:
    """Upright HxWx3 uint8 RGB of a file, bytes or PIL image (see :func:`decode_image`)."""
    return decode_image(source).rgb


def _check_size(size: tuple[int, int], limit: int, min_side: int) -> None:
    width, height = size
    if width * height > limit:
        raise ImageDecodeError("too_large", f"image is {width}x{height} = {width * height} "
                               f"pixels; the limit is {limit}")
    if width < min_side or height < min_side:
        raise ImageDecodeError("too_small", f"image is too small to inspect ({width}x{height})")


def _finish(image: Image.Image, limit: int, min_side: int, data: bytes | None,
            deep: bool) -> DecodedImage:
    _check_size(image.size, limit, min_side)
    fmt = image.format
    rgb = _to_rgb8(image, data if deep else None)
    orientation = image.getexif().get(0x0112, 1)
    if orientation in _ORIENTATION:
        rgb = np.asarray(Image.fromarray(rgb).transpose(_ORIENTATION[orientation]))
    content_type, suffix = FORMATS.get(fmt or "", (None, None))
    return DecodedImage(rgb=np.ascontiguousarray(rgb), format=fmt, content_type=content_type,
                        suffix=suffix)


def _is_16bit_colour(image: Image.Image) -> bool:
    """Pillow keeps 48/64-bit RGB(A) and 32-bit LA as 8-bit modes (high byte only)."""
    if image.mode not in ("RGB", "RGBA", "LA"):
        return False
    for tile in getattr(image, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    bits = getattr(image, "tag_v2", {}).get(258) if image.format == "TIFF" else None
    return isinstance(bits, tuple) and max(bits) == 16


def _scale(values: np.ndarray, full: float) -> np.ndarray:
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / full)), 0, 255).astype(np.uint8)


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _to_rgb8(image: Image.Image, data: bytes | None) -> np.ndarray:
    """``data``: the encoded file when it holds 16-bit colour (decoded with OpenCV)."""
    mode = image.mode
    if data is not None:  # 16-bit colour: Pillow would keep only the high byte
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8),
                           cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if arr is None:
            raise ImageDecodeError("corrupt", "the 16-bit image could not be decoded")
        full = 65535.0 if arr.dtype == np.uint16 else 255.0
        if arr.ndim == 2:
            return _gray3(_scale(arr, full))
        return _scale(arr[..., 2::-1] if arr.shape[2] >= 3 else _gray3(arr[..., 0]), full)
    if mode.startswith("I;16"):
        return _gray3(_scale(np.asarray(image).astype(np.uint16), 65535.0))
    if mode == "I":
        arr = np.asarray(image).astype(np.int64)
        bits = _bit_depth(image, arr)
        return _gray3(_scale(np.clip(arr, 0, None), float(2**bits - 1)))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(image, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1:
            full = 1.0
        elif lo >= 0 and hi <= 255:
            full = 255.0
        elif lo >= 0 and hi <= 65535:
            full = 65535.0
        else:
            arr, full = arr - lo, max(hi - lo, 1e-12)
        return _gray3(_scale(arr, full))
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def _bit_depth(image: Image.Image, arr: np.ndarray) -> int:
    if image.format == "PNG":
        return 16
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258)
        if isinstance(bits, tuple) and bits:
            return int(bits[0])
        if isinstance(bits, int):
            return bits
    return 16 if arr.size and int(arr.max()) <= 65535 else 32


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
