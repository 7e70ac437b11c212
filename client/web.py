"""Serve the Flet client as a web app from the backend's FastAPI app, at "/".

Any tablet browser then opens ``http://<server>:<port>/``: no install. The Python side of each
browser session runs in the server process and calls the API over HTTP at the server's own
address (learnt from the first request, or the ``api_url`` the composition root passes), with
the token its person signed in with; photos and overlays go through it too (inline).
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from pathlib import Path

import flet as ft
import flet_web.fastapi as flet_fastapi
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from kensa.client.app import make_main
from kensa.contract.constants import DEFAULT_SERVER_URL


class ServerAddress:
    """Remembers the address this server was reached at, so sessions can call its API."""

    def __init__(self, override: str | None = None):
        self.override = override
        self.seen: tuple[str, int] | None = None

    def url(self) -> str:
        if self.override:
            return self.override.rstrip("/")
        if self.seen is None:
            return DEFAULT_SERVER_URL
        host, port = self.seen
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def remember(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket") and scope.get("server"):
                host, port = scope["server"][:2]
                if port:
                    self.seen = (str(host), int(port))
            await app(scope, receive, send)

        return remember


def build_flet_app(address: ServerAddress, *, data_dir: Path, max_upload_bytes: int,
                   secret_key: str | None = None, token: str | None = None) -> FastAPI:
    """The Flet web app; its uploads and offline queue live under ``data_dir``."""
    upload_dir = (data_dir / "client-uploads").resolve()
    upload_dir.mkdir(parents=True, exist_ok=True)
    # Sessions sign in on the sign-in screen; ``token`` (the server's ``client_token``, a kiosk
    # mechanism) instead starts every browser signed in as its user. With a token the browser
    # cannot load photos by URL (no header on <img>): the session fetches and inlines them.
    main = make_main(address.url, public_url="", queue_dir=data_dir / "client-queue", web=True,
                     token=token)
    return flet_fastapi.app(
        main,
        app_name="kensa",
        app_short_name="kensa",
        app_description="Visual inspection of steel surfaces",
        web_renderer=ft.WebRenderer.CANVAS_KIT,
        no_cdn=True,  # CanvasKit and fonts come from the server: works on an offline LAN
        upload_dir=str(upload_dir),
        secret_key=secret_key or secrets.token_urlsafe(32),
        max_upload_size=max_upload_bytes,
    )


def mount_client(app: FastAPI, *, data_dir: Path, max_upload_bytes: int,
                 api_url: str | None = None, secret_key: str | None = None,
                 token: str | None = None) -> None:
    """Mount the web client at "/" of ``app`` (mount it after the API routes).

    ``api_url``: where sessions call the API (default: the address the server was reached at);
    ``secret_key``: signs upload URLs (default: a new random key).
    """
    address = ServerAddress(api_url)
    flet_app = build_flet_app(address, data_dir=Path(data_dir), max_upload_bytes=max_upload_bytes,
                              secret_key=secret_key, token=token)
    app.mount("/", address.wrap(flet_app), name="client")

    # Mounted apps get no lifespan of their own: start Flet's session manager with the backend.
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: FastAPI):
        await flet_fastapi.app_manager.start()
        try:
            async with inner(asgi_app) as state:
                yield state
        finally:
            await flet_fastapi.app_manager.shutdown()

    app.router.lifespan_context = lifespan
