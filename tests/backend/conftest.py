"""Fixtures for the service tests: a real PatchCore fitted once per session on synthetic
strips, real databases (SQLite, and PostgreSQL / MariaDB when 127.0.0.1:5432 / :3306 answer),
the app with its lifespan running behind httpx.ASGITransport, a live uvicorn server on loopback,
and a real S3 endpoint (moto in server mode) on loopback."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from backend_testing import (
    S3_KEYS,
    STRIP_SIZE,
    LiveServer,
    Service,
    fresh_database,
    make_settings,
    moto_s3,
    new_bucket,
    running_service,
)

from kensa.backend.main import create_app
from kensa.models import artifacts
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.registry import create_detector, get_spec


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def strips() -> SteelStripGenerator:
    """Test strips: a different seed from the one the detector was fitted on."""
    return SteelStripGenerator(size=STRIP_SIZE, seed=7)


@pytest.fixture(scope="session")
def patchcore_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PatchCore (quick settings) fitted on 12 good synthetic strips, saved once."""
    directory = tmp_path_factory.mktemp("artifacts") / "patchcore"
    detector = create_detector("patchcore", **get_spec("patchcore").quick)
    detector.fit(SteelStripGenerator(size=STRIP_SIZE, seed=0).samples(12, 0))
    artifacts.save(detector, directory)
    return directory


@pytest.fixture
def model_dir(tmp_path: Path, patchcore_artifact: Path) -> Path:
    """A fresh MODEL_DIR holding a copy of the session's PatchCore (tests may change it)."""
    out = tmp_path / "models"
    shutil.copytree(patchcore_artifact, out / "patchcore")
    return out


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def service(tmp_path: Path, model_dir: Path, database_url: str
                  ) -> AsyncIterator[Service]:
    """The service on SQLite, PostgreSQL and MariaDB, each with an empty database."""
    async with running_service(make_settings(tmp_path, model_dir, database_url)) as svc:
        yield svc


@pytest.fixture
async def sqlite_service(tmp_path: Path, model_dir: Path) -> AsyncIterator[Service]:
    async with running_service(make_settings(tmp_path, model_dir)) as svc:
        yield svc


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


@pytest.fixture
def s3_settings(s3_endpoint: str) -> dict[str, str]:
    """Settings for a fresh bucket on the loopback S3 endpoint, under a key prefix."""
    return {"storage_url": f"s3://{new_bucket(s3_endpoint)}/plant-1/blobs",
            "s3_endpoint_url": s3_endpoint, **S3_KEYS}


@pytest.fixture
def live_server(tmp_path: Path, model_dir: Path, database_url: str) -> Iterator[LiveServer]:
    """uvicorn on a free loopback port in a thread (SQLite and PostgreSQL), stopped after."""
    import uvicorn

    settings = make_settings(tmp_path, model_dir, database_url, inference_concurrency=2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the live server did not become ready")
        time.sleep(0.05)
    token = httpx.post(f"{url}/api/v1/auth/token", timeout=30, data={
        "username": "admin", "password": settings.admin_password}).json()["access_token"]
    try:
        yield LiveServer(url=url, settings=settings, headers={"Authorization": f"Bearer {token}"})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
