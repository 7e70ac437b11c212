"""Every bad upload gets a clear JSON error and leaves nothing behind: no row, no file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from backend_testing import Service, encode, make_settings, running_service

pytestmark = pytest.mark.anyio

MAX_UPLOAD_MB = 0.25
MAX_PIXELS = 200_000


@pytest.fixture
async def strict_service(tmp_path: Path, model_dir: Path, database_url: str
                         ) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, model_dir, database_url, max_upload_mb=MAX_UPLOAD_MB,
                             max_pixels=MAX_PIXELS)
    async with running_service(settings) as svc:
        # one good record first, so "nothing changed" is checked against a non-empty state
        assert (await svc.upload(encode(np.full((64, 64, 3), 120, np.uint8)))).status_code == 201
        yield svc


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _cases(strip: np.ndarray) -> dict[str, tuple[dict, int]]:
    png, jpeg = encode(strip), encode(strip, "JPEG", quality=95)
    big = encode(noise(400, 400))  # ~480 KB of incompressible PNG
    assert len(big) > MAX_UPLOAD_MB * 1024 * 1024
    bomb = encode(np.zeros((600, 600, 3), np.uint8))  # tiny file, 360k pixels
    assert len(bomb) < MAX_UPLOAD_MB * 1024 * 1024
    gif = encode(strip, "GIF")
    return {
        "empty file": ({"files": {"image": ("a.png", b"", "image/png")}}, 422),
        "text, not an image": ({"files": {"image": ("a.png", b"hello, steel" * 50,
                                                    "image/png")}}, 415),
        "unsupported format (GIF)": ({"files": {"image": ("a.gif", gif, "image/gif")}}, 415),
        "truncated PNG": ({"files": {"image": ("a.png", png[: len(png) // 2],
                                               "image/png")}}, 422),
        "truncated JPEG": ({"files": {"image": ("a.jpg", jpeg[: len(jpeg) // 2],
                                                "image/jpeg")}}, 422),
        "PNG with a broken checksum": ({"files": {"image": (
            "a.png", png[:-20] + bytes(b ^ 0xFF for b in png[-20:-12]) + png[-12:],
            "image/png")}}, 422),
        "declared text/plain": ({"files": {"image": ("a.png", png, "text/plain")}}, 415),
        "JSON body": ({"json": {"image": "x"}}, 415),
        "urlencoded body": ({"data": {"image": "x"}}, 415),
        "no image field": ({"files": {"photo": ("a.png", png, "image/png")}}, 422),
        "over the size limit": ({"files": {"image": ("a.png", big, "image/png")}}, 413),
        "decompression bomb": ({"files": {"image": ("a.png", bomb, "image/png")}}, 413),
        "too small to inspect": ({"files": {"image": ("a.png", encode(noise(4, 4)),
                                                      "image/png")}}, 422),
        "unknown detector": ({"files": {"image": ("a.png", png, "image/png")},
                              "data": {"detectors": "patchcore,nonesuch"}}, 422),
        "station too long": ({"files": {"image": ("a.png", png, "image/png")},
                              "data": {"station": "x" * 101}}, 422),
        "NUL byte in the station": ({"files": {"image": ("a.png", png, "image/png")},
                                     "data": {"station": "line\x001"}}, 422),
        "NUL byte in the operator": ({"files": {"image": ("a.png", png, "image/png")},
                                      "data": {"operator": "\x00"}}, 422),
        "NUL byte in the note": ({"files": {"image": ("a.png", png, "image/png")},
                                  "data": {"note": "dent\x00 near the edge"}}, 422),
    }


@pytest.mark.parametrize("case", [
    "empty file", "text, not an image", "unsupported format (GIF)", "truncated PNG",
    "truncated JPEG", "PNG with a broken checksum", "declared text/plain", "JSON body",
    "urlencoded body", "no image field", "over the size limit", "decompression bomb",
    "too small to inspect", "unknown detector", "station too long",
    "NUL byte in the station", "NUL byte in the operator", "NUL byte in the note",
])
async def test_rejected_and_nothing_left_behind(strict_service: Service, strips,
                                                case: str) -> None:
    kwargs, status = _cases(strips.defective(2).image)[case]
    counts, files = strict_service.counts(), strict_service.files()
    response = await strict_service.client.post("/api/v1/inspections", **kwargs)
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]
    assert strict_service.counts() == counts
    assert strict_service.files() == files


async def test_streamed_body_over_the_limit_is_cut_off(strict_service: Service) -> None:
    """No Content-Length: the limit is enforced while the bytes arrive."""
    boundary = "kensa-boundary"
    sent = 0

    async def body():
        nonlocal sent
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
               f'filename="a.png"\r\nContent-Type: image/png\r\n\r\n').encode()
        for _ in range(200):  # would be 12.5 MB
            sent += 65536
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    counts, files = strict_service.counts(), strict_service.files()
    response = await strict_service.client.post(
        "/api/v1/inspections", content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert response.json()["detail"]
    assert sent < 200 * 65536  # the server stopped reading
    assert strict_service.counts() == counts and strict_service.files() == files


async def test_failed_transaction_removes_its_blobs(sqlite_service: Service, strips) -> None:
    """A database failure mid-transaction rolls back every row and deletes the new blobs."""
    kept = (await sqlite_service.upload(encode(strips.good(1).image))).json()
    counts, files = sqlite_service.counts(), sqlite_service.files()
    with sqlite_service.engine.begin() as conn:  # make the last insert of the transaction fail
        conn.execute(sa.text("ALTER TABLE evidence_map RENAME TO evidence_map_away"))
    transport = httpx.ASGITransport(app=sqlite_service.app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     headers=sqlite_service.client.headers) as client:
            for image in (strips.defective(4).image,
                          strips.good(1).image):  # the same photo as a committed record
                response = await client.post("/api/v1/inspections", files={
                    "image": ("a.png", encode(image), "image/png")})
                assert response.status_code == 500
                assert response.json() == {"detail": "internal server error"}
    finally:
        with sqlite_service.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE evidence_map_away RENAME TO evidence_map"))
    assert sqlite_service.counts() == counts
    assert sqlite_service.files() == files
    image = await sqlite_service.client.get(kept["image_url"])
    assert image.status_code == 200


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/inspections", {"offset": str(2**63)}),
    ("/api/v1/inspections", {"offset": str(10**30)}),
    ("/api/v1/inspections", {"end": "9999-12-31"}),
    ("/api/v1/inspections", {"start": "0001-01-01T00:00:00+05:00"}),
    ("/api/v1/stats", {"end": "9999-12-31"}),
    ("/api/v1/stats", {"start": "0001-01-01T00:00:00+05:00", "bucket": "month"}),
    ("/api/v1/stats", {"start": "0001-01-01", "end": "2026-01-01"}),  # too many buckets
])
async def test_out_of_range_queries_are_422(service: Service, path: str, params: dict) -> None:
    """These once answered 500 (integer and date overflows in SQL or in Python)."""
    response = await service.client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_finding_index_past_the_int_range_is_422(service: Service, strips) -> None:
    record = (await service.upload(encode(strips.defective(1).image))).json()
    base = f"/api/v1/inspections/{record['id']}/findings"
    assert (await service.client.get(f"{base}/2147483648/mask")).status_code == 422
    assert (await service.client.get(f"{base}/0/mask")).status_code == 422
    assert (await service.client.get(f"{base}/2147483647/mask")).status_code == 404


async def test_stats_of_the_last_buckets_of_year_9999(service: Service) -> None:
    for bucket in ("day", "week", "month"):
        response = await service.client.get("/api/v1/stats", params={
            "start": "9999-12-01", "end": "9999-12-30T23:59:59", "bucket": bucket})
        assert response.status_code == 200, (bucket, response.text)
        assert response.json()["buckets"][-1]["start"].startswith("9999-12")
