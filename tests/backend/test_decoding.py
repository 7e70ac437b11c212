"""The service sees phone photos upright and 16-bit photos as their 8-bit selves."""

from __future__ import annotations

import io

import numpy as np
import pytest
from backend_testing import Service, encode
from PIL import Image

from tests.photos import png16, rotated_jpeg

pytestmark = pytest.mark.anyio


async def _inspect(svc: Service, data: bytes, name: str, ctype: str) -> dict:
    response = await svc.upload(data, name=name, content_type=ctype)
    assert response.status_code == 201, response.text
    return response.json()


def _score(record: dict) -> float:
    return float(record["runs"][0]["anomaly_score"])


async def test_rotated_and_16bit_uploads(sqlite_service: Service, strips) -> None:
    strip = strips.defective(2).image
    upright = await _inspect(sqlite_service, encode(strip, "JPEG", quality=98), "u.jpg",
                             "image/jpeg")
    rotated = await _inspect(sqlite_service, rotated_jpeg(strip), "r.jpg", "image/jpeg")
    assert (rotated["width"], rotated["height"]) == (strip.shape[1], strip.shape[0])
    assert rotated["verdict"] == upright["verdict"]
    assert _score(rotated) == pytest.approx(_score(upright), rel=0.01)
    overlay = await sqlite_service.client.get(rotated["overlay_url"])
    assert overlay.status_code == 200
    assert Image.open(io.BytesIO(overlay.content)).size == (strip.shape[1], strip.shape[0])
    # re-rendered from the stored (still rotated) JPEG: upright again, matching the original
    plain = await sqlite_service.client.get(rotated["overlay_url"], params={"layers": "boxes"})
    assert plain.status_code == 200, plain.text
    pixels = np.asarray(Image.open(io.BytesIO(plain.content)).convert("RGB")).astype(int)
    assert pixels.shape == strip.shape
    assert np.abs(pixels - strip).mean() < np.abs(pixels - strip[::-1, ::-1]).mean()

    gray = np.rint(strip.mean(axis=2))
    gray8 = await _inspect(sqlite_service, encode(gray.astype(np.uint8)), "g8.png", "image/png")
    gray16 = await _inspect(sqlite_service, png16(gray * 257), "g16.png", "image/png")
    rgb8 = await _inspect(sqlite_service, encode(strip), "c8.png", "image/png")
    rgb16 = await _inspect(sqlite_service, png16(strip.astype(np.uint16) * 257), "c16.png",
                           "image/png")
    for a, b in ((gray16, gray8), (rgb16, rgb8)):
        assert a["verdict"] == b["verdict"]
        assert _score(a) == pytest.approx(_score(b), rel=0.01)
