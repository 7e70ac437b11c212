"""Helpers for the client tests (a unique module name: conftest.py files share theirs)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
from PIL import Image

from kensa.backend.config import Settings
from kensa.backend.main import create_app
from kensa.contract.client import ApiClient

BASE = "http://localhost"  # a Host the backend's allow-list always accepts
STRIP_SIZE = (128, 256)
ADMIN_PASSWORD = "admin-test-password"  # the backend fixture signs in as this admin
OPERATOR_PASSWORD = "operator-test-password"


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused: a real unreachable server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Backend:
    app: object
    api: ApiClient  # signed in as the admin
    transport: httpx.AsyncBaseTransport


@asynccontextmanager
async def running_backend(tmp_path: Path, model_dir: Path, **settings: Any
                          ) -> AsyncIterator[Backend]:
    """The real app (lifespan running) on SQLite behind ASGITransport, ready, with an API
    client signed in as the admin; ``settings`` override the defaults."""
    config = Settings(data_dir=tmp_path / "data", model_dir=model_dir,
                      database_url=f"sqlite:///{tmp_path / 'kensa.db'}", serve_client=False,
                      admin_password=ADMIN_PASSWORD, **settings)
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as raw:
            token = (await raw.post("/api/v1/auth/token", data={
                "username": "admin", "password": ADMIN_PASSWORD})).json()["access_token"]
        api = ApiClient(BASE, transport=transport, public_url="", token=token)
        deadline = time.monotonic() + 120
        while not await api.ready():
            assert time.monotonic() < deadline, "backend not ready"
            await anyio.sleep(0.05)
        try:
            yield Backend(app=app, api=api, transport=transport)
        finally:
            await api.aclose()
