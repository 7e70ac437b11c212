"""The one photo decoder: every PIL mode, EXIF orientation, 16-bit scaling, error reasons;
and the same upright pixels through a dataset layout and ``kensa predict``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from kensa.cli import main
from kensa.models import artifacts
from kensa.models.data.layouts import load_dataset
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.imaging import ImageDecodeError, decode_image
from kensa.models.registry import create_detector, get_spec
from tests.photos import arrow, png16, rotated_jpeg, save

RAMP16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16 + 7).astype(np.uint16)
NOISE = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
EXPECTED16 = np.rint(RAMP16 / 257).astype(np.uint8)


def test_exif_orientation_is_applied() -> None:
    upright = arrow()
    decoded = decode_image(rotated_jpeg(upright))
    assert decoded.rgb.shape == upright.shape
    assert decoded.format == "JPEG" and decoded.content_type == "image/jpeg"
    assert decoded.suffix == "jpg"
    assert np.abs(decoded.rgb.astype(int) - upright).mean() < 4


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr"])
def test_8bit_modes(mode: str) -> None:
    rgb = arrow()
    image = Image.fromarray(rgb).convert(mode)
    decoded = decode_image(image).rgb
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    expected = np.asarray(image.convert("RGBA").convert("RGB"))  # alpha dropped
    assert np.abs(decoded.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_16bit_gray_is_scaled_not_clipped(mode: str) -> None:
    raw = RAMP16.astype(">u2" if mode == "I;16B" else "<u2").tobytes()
    image = Image.frombytes(mode, (64, 64), raw)  # Pillow's convert() to I;16B clips at 255
    assert image.mode == mode
    assert np.array_equal(decode_image(image).rgb[..., 1], EXPECTED16)


def test_16bit_png_and_tiff_files() -> None:
    for data in (png16(RAMP16), save(Image.fromarray(RAMP16), "TIFF")):
        rgb = decode_image(data).rgb
        assert np.array_equal(rgb[..., 0], EXPECTED16) and np.array_equal(rgb[..., 2], EXPECTED16)


def test_48bit_rgb_png_and_tiff() -> None:
    rgb16 = np.stack([RAMP16, RAMP16 // 2, RAMP16 // 3], axis=-1)
    expected = np.rint(rgb16 / 257).astype(np.uint8)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb16, photometric="rgb")
    for data in (png16(rgb16), buffer.getvalue()):
        assert np.array_equal(decode_image(data).rgb, expected)


def test_32bit_int_and_float() -> None:
    as_int = Image.fromarray(RAMP16.astype(np.int32))  # mode I, 16-bit values
    assert as_int.mode == "I"
    assert np.array_equal(decode_image(as_int).rgb[..., 0], EXPECTED16)
    unit = Image.fromarray((RAMP16 / 65535).astype(np.float32))
    assert unit.mode == "F"
    assert np.abs(decode_image(unit).rgb[..., 0].astype(int) - EXPECTED16).max() <= 1
    wide = Image.fromarray(RAMP16.astype(np.float32))
    assert np.abs(decode_image(wide).rgb[..., 0].astype(int) - EXPECTED16).max() <= 1


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"hello, steel" * 50, "unsupported"),
    (save(Image.fromarray(arrow()), "GIF"), "unsupported"),
    (save(Image.fromarray(NOISE))[:3000], "corrupt"),
    (save(Image.fromarray(np.zeros((600, 600, 3), np.uint8))), "too_large"),
    (save(Image.fromarray(np.zeros((4, 4, 3), np.uint8))), "too_small"),
])
def test_error_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, max_pixels=200_000)
    assert info.value.reason == reason and info.value.detail


@pytest.fixture(scope="module")
def patchcore_dir(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    directory = tmp_path_factory.mktemp("artifact") / "patchcore"
    detector = create_detector("patchcore", **get_spec("patchcore").quick)
    detector.fit(SteelStripGenerator(size=(128, 256), seed=0).samples(8, 0))
    artifacts.save(detector, directory)
    return directory


def _predict(artifact: Path, paths: list[Path], capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["predict", str(artifact), *map(str, paths), "--json"]) == 0
    return {Path(r["image"]).name: r for r in json.loads(capsys.readouterr().out)}


def test_rotated_and_16bit_photos_agree_in_layout_and_predict(
        tmp_path: Path, patchcore_dir: Path, capsys) -> None:
    strip = SteelStripGenerator(size=(128, 256), seed=3).defective(1).image
    root = tmp_path / "data" / "good"
    root.mkdir(parents=True)
    Image.fromarray(strip).save(root / "upright.png")
    portrait = np.ascontiguousarray(strip)
    (root / "upright.jpg").write_bytes(save(Image.fromarray(portrait), "JPEG", quality=98))
    (root / "rotated.jpg").write_bytes(rotated_jpeg(portrait))
    gray = strip.mean(axis=2)
    Image.fromarray(np.rint(gray).astype(np.uint8)).save(root / "gray8.png")
    (root / "gray16.png").write_bytes(png16(np.rint(gray * 257)))
    (root / "rgb16.png").write_bytes(png16(strip.astype(np.uint16) * 257))

    samples = {s.path.name: s for s in load_dataset(tmp_path / "data").samples}
    seen = {name: s.load_image() for name, s in samples.items()}
    assert seen["rotated.jpg"].shape == strip.shape
    assert np.abs(seen["rotated.jpg"].astype(int) - seen["upright.jpg"]).mean() < 2
    assert np.array_equal(seen["rgb16.png"], strip)
    assert np.abs(seen["gray16.png"].astype(int) - seen["gray8.png"]).max() <= 1

    out = _predict(patchcore_dir, sorted(root.iterdir()), capsys)
    for a, b in (("rotated.jpg", "upright.jpg"), ("gray16.png", "gray8.png"),
                 ("rgb16.png", "upright.png")):
        assert out[a]["verdict"] == out[b]["verdict"], (a, b)
        assert out[a]["anomaly_score"] == pytest.approx(out[b]["anomaly_score"], rel=0.01), (a, b)
