"""Limits a shared plant network needs, through HTTP: the pixel limit read from the header
before decoding, image work (decoding, rendering) inside the inference limiter, the per-client
upload rate, the Host allow-list, and malformed bodies answered 4xx."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from backend_testing import Service, encode, make_settings, running_service

from kensa.backend.web_security import machine_names

pytestmark = pytest.mark.anyio


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width`` x ``height`` and whose pixel data is cut off:
    a decoder that got as far as the pixels would call it corrupt (422), not too large."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)[:10]) + chunk(b"IEND", b""))


async def test_huge_photo_is_refused_from_its_header(sqlite_service: Service) -> None:
    """7000 x 7000 is over the default limit (25 MP): 413 before any pixel is decoded."""
    before = sqlite_service.counts(), sqlite_service.files()
    answer = await sqlite_service.upload(png_header_only(7000, 7000))
    assert answer.status_code == 413, answer.text
    assert "pixels" in answer.json()["detail"]
    assert (sqlite_service.counts(), sqlite_service.files()) == before
    # the same header within the limit gets as far as the pixels, which are cut off
    assert (await sqlite_service.upload(png_header_only(64, 64))).status_code == 422


@pytest.fixture
async def one_slot(tmp_path: Path, model_dir: Path) -> AsyncIterator[Service]:
    async with running_service(make_settings(tmp_path, model_dir, inference_concurrency=1)
                               ) as svc:
        yield svc


async def _waits_for_the_limiter(svc: Service, request) -> httpx.Response:
    """Hold the service's only slot, start ``request``, see it queue on the limiter (no answer
    yet), release the slot and return the answer."""
    limiter: anyio.CapacityLimiter = svc.app.state.limiter
    holder = object()
    await limiter.acquire_on_behalf_of(holder)
    answers: list[httpx.Response] = []
    try:
        async with anyio.create_task_group() as tasks:
            async def send() -> None:
                answers.append(await request())

            tasks.start_soon(send)
            with anyio.fail_after(60):
                while limiter.statistics().tasks_waiting == 0:
                    await anyio.sleep(0.01)
            assert answers == []  # queued behind the held slot
            limiter.release_on_behalf_of(holder)
            holder = None
    finally:
        if holder is not None:
            limiter.release_on_behalf_of(holder)
    return answers[0]


async def test_decoding_waits_for_the_inference_limiter(one_slot: Service) -> None:
    """A photo that fails only once decoded (header fine, pixels cut off) is not answered
    while every slot is taken: decoding runs inside the limiter."""
    answer = await _waits_for_the_limiter(one_slot, lambda: one_slot.upload(
        png_header_only(3000, 3000)))
    assert answer.status_code == 422, answer.text
    assert one_slot.count("inspection") == 0


async def test_rendering_an_overlay_waits_for_the_inference_limiter(one_slot: Service,
                                                                    strips) -> None:
    record = (await one_slot.upload(encode(strips.defective(3).image))).json()
    answer = await _waits_for_the_limiter(one_slot, lambda: one_slot.client.get(
        f"/api/v1/inspections/{record['id']}/overlay", params={"layers": "heatmap"}))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"


async def test_uploads_are_rate_limited_per_client(tmp_path: Path, model_dir: Path,
                                                   strips) -> None:
    photo = encode(strips.good(5).image)
    settings = make_settings(tmp_path, model_dir, inspections_per_minute=2)
    async with running_service(settings) as svc:
        for _ in range(2):
            assert (await svc.upload(photo)).status_code == 201
        refused = await svc.upload(photo)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "uploads a minute" in refused.json()["detail"]
        assert svc.count("inspection") == 2
        # another client (a station key) has its own budget
        key = await svc.client.post("/api/v1/station-keys",
                                    json={"name": "cam", "station": "line-2"})
        answer = await svc.client.post(
            "/api/v1/inspections", files={"image": ("a.png", photo, "image/png")},
            headers={"Authorization": f"Bearer {key.json()['key']}"})
        assert answer.status_code == 201, answer.text
        assert svc.count("inspection") == 3


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000",
                                  "10.1.2.3", "192.168.0.20:8443", machine_names()[-1]])
async def test_default_hosts_are_served(sqlite_service: Service, host: str) -> None:
    answer = await sqlite_service.client.get("/api/v1/auth/me", headers={"Host": host})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example",
                                  "10.1.2.3.nip.io"])
async def test_other_hosts_get_400(sqlite_service: Service, strips, host: str) -> None:
    """A name that is not this machine's (DNS rebinding) is refused before anything runs."""
    for answer in (await sqlite_service.client.get("/healthz", headers={"Host": host}),
                   await sqlite_service.client.post(
                       "/api/v1/inspections", headers={"Host": host},
                       files={"image": ("a.png", encode(strips.good(1).image), "image/png")})):
        assert answer.status_code == 400, answer.text
        assert "allowed_hosts" in answer.json()["detail"]
    assert sqlite_service.count("inspection") == 0


async def test_allowed_hosts_setting_is_exact(tmp_path: Path, model_dir: Path) -> None:
    """A list replaces the default: only its names, and of IP addresses only loopback (the web
    client's sessions call the API there)."""
    settings = make_settings(tmp_path, model_dir, allowed_hosts=[
        "localhost", "kensa.plant.example", "*.line.example"])
    async with running_service(settings, ready=False) as svc:
        for host, status in [("kensa.plant.example", 200), ("cam.line.example:8000", 200),
                             ("127.0.0.1:8000", 200), ("[::1]", 200), ("10.1.2.3", 400),
                             ("192.168.0.20:8000", 400), ("other.example", 400),
                             (machine_names()[-1], 400)]:
            answer = await svc.client.get("/healthz", headers={"Host": host})
            assert answer.status_code == status, (host, answer.text)


async def test_undecodable_json_body_is_422(sqlite_service: Service) -> None:
    """Bytes that are not JSON at all (found by the schema fuzzer: a 500 echoing bytes)."""
    dataset = (await sqlite_service.client.post("/api/v1/datasets", json={"name": "d"})).json()
    answer = await sqlite_service.client.post(
        f"/api/v1/datasets/{dataset['id']}/images", content=b"\xe8\xd5\x8bZ\xff",
        headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert sqlite_service.count("dataset_image") == 0
