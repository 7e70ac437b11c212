"""The web client mounted into the real backend app at "/"."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kensa.app import create_app
from kensa.backend.config import Settings
from kensa.client.web import ServerAddress

pytestmark = pytest.mark.anyio


async def test_client_is_served_next_to_the_api(tmp_path: Path, patchcore_dir: Path):
    settings = Settings(data_dir=tmp_path / "data", model_dir=patchcore_dir,
                        database_url=f"sqlite:///{tmp_path / 'kensa.db'}", serve_client=True,
                        client_token="kiosk-test-token")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert "flutter" in page.text.lower() and "<html" in page.text.lower()
            # No CDN: CanvasKit and the fonts come from this server (works on an offline LAN).
            assert "noCdn=true" in page.text.replace(" ", "")
            wasm = await http.get("/canvaskit/chromium/canvaskit.wasm")
            assert wasm.status_code == 200 and wasm.content[:4] == b"\0asm"
            # The API is not shadowed by the mount.
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/api/v1/inspections")).status_code == 401
            # the kiosk token (client_token) is registered: such a kiosk starts signed in with it
            listing = await http.get("/api/v1/inspections",
                                     headers={"Authorization": "Bearer kiosk-test-token"})
            assert listing.status_code == 200 and listing.json()["total"] == 0
            # the client's pages carry no API CSP (Flet needs scripts and wasm)
            assert "content-security-policy" not in page.headers
            assert page.headers["x-content-type-options"] == "nosniff"
    assert (tmp_path / "data" / "client-uploads").is_dir()


async def test_server_address_is_learnt_from_requests():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["path"])

    address = ServerAddress()
    wrapped = address.wrap(inner)
    await wrapped({"type": "http", "path": "/", "server": ("0.0.0.0", 8123)}, None, None)
    assert seen == ["/"] and address.url() == "http://127.0.0.1:8123"
    await wrapped({"type": "websocket", "path": "/ws", "server": ("192.168.1.5", 80)}, None, None)
    assert address.url() == "http://192.168.1.5:80"
    assert ServerAddress("http://api.local:9000/").url() == "http://api.local:9000"


def test_settings_show_the_page_address_not_the_websocket():
    from kensa.client.app import http_origin

    assert http_origin("ws://10.0.0.5:8000/ws") == "http://10.0.0.5:8000"
    assert http_origin("wss://kensa.plant.example/ws") == "https://kensa.plant.example"
    assert http_origin("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_web_client_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KENSA_CLIENT_API_URL", "http://10.0.0.9:8000")
    monkeypatch.setenv("FLET_SECRET_KEY", "old-name")
    settings = Settings()
    assert settings.client_api_url == "http://10.0.0.9:8000"
    assert settings.web_secret_key.get_secret_value() == "old-name"
    assert "old-name" not in repr(settings)
    monkeypatch.setenv("KENSA_WEB_SECRET_KEY", "new-name")
    assert Settings().web_secret_key.get_secret_value() == "new-name"
