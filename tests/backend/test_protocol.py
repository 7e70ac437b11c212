"""HTTP as a plant network sees it: documented errors, methods, the docs page offline, and
connections that survive a server error."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from backend_testing import LiveServer, Service, encode, make_settings, running_service

from kensa.app import create_app

pytestmark = pytest.mark.anyio


async def test_two_image_parts_are_refused(sqlite_service: Service, strips) -> None:
    png = encode(strips.good(1).image)
    counts, files = sqlite_service.counts(), sqlite_service.files()
    response = await sqlite_service.client.post("/api/v1/inspections", files=[
        ("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))])
    assert response.status_code == 422
    assert "exactly one" in response.json()["detail"]
    assert sqlite_service.counts() == counts and sqlite_service.files() == files


async def test_openapi_documents_404_and_error_bodies(sqlite_service: Service) -> None:
    spec = (await sqlite_service.client.get("/api/v1/openapi.json")).json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if "{inspection_id}" in path or "{name}" in path:
                assert "404" in responses, (method, path)
            if "422" in responses:
                schema = responses["422"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


async def test_422_bodies_do_not_echo_large_inputs(sqlite_service: Service) -> None:
    response = await sqlite_service.client.patch("/api/v1/detectors/patchcore",
                                                 json={"threshold": "x" * 100_000})
    assert response.status_code == 422
    assert len(response.content) < 2_000


async def test_docs_page_needs_no_internet(sqlite_service: Service) -> None:
    page = await sqlite_service.client.get("/api/v1/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(not urlsplit(s).netloc for s in sources), sources
    for source in sources:
        asset = await sqlite_service.client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 100, source


async def test_api_methods_and_paths_never_fall_through_to_the_web_client(
        tmp_path: Path, model_dir: Path) -> None:
    settings = make_settings(tmp_path, model_dir).model_copy(update={"serve_client": True})
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        options = await client.options("/api/v1/inspections")
        assert options.status_code == 204
        assert options.headers["allow"] == "GET, OPTIONS, POST"
        wrong = await client.put("/api/v1/inspections")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, OPTIONS, POST"
        assert wrong.json()["detail"]
        missing = await client.get("/api/v1/no-such-thing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"
        assert (await client.get("/")).status_code == 200  # the client is still served


def _raw_request(sock: socket.socket, method: str, path: str, host: str,
                 token: str = "") -> bytes:
    auth = f"Authorization: {token}\r\n" if token else ""
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_keep_alive_survives_a_server_error(live_server: LiveServer, strips) -> None:
    """A 500 answers as JSON and the tablet's keep-alive connection stays usable."""
    record = httpx.post(f"{live_server.url}/api/v1/inspections", timeout=120,
                        headers=live_server.headers, files={
        "image": ("a.png", encode(strips.defective(2).image), "image/png")}).json()
    for blob in live_server.settings.storage_dir.rglob("*"):  # a storage fault: no photo
        if blob.is_file():
            blob.unlink()
    parts = urlsplit(live_server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        token = live_server.headers["Authorization"]
        head = _raw_request(sock, "GET", f"{record['overlay_url']}?layers=masks", parts.netloc,
                            token)
        assert head.startswith(b"HTTP/1.1 500")
        head = _raw_request(sock, "GET", "/api/v1/inspections", parts.netloc, token)  # same
        assert head.startswith(b"HTTP/1.1 200")


async def test_service_factory_still_builds_without_the_client(tmp_path: Path,
                                                                model_dir: Path) -> None:
    async with running_service(make_settings(tmp_path, model_dir)) as service:
        assert (await service.client.get("/")).status_code == 404
