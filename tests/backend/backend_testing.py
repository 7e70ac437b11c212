"""Helpers for the service tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import io
import logging
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from PIL import Image

from kensa.backend.config import Settings
from kensa.backend.main import create_app

STRIP_SIZE = (128, 256)
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN_PASSWORD = "admin-test-password"  # the harness signs in as this admin
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
S3_KEYS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing",
           "s3_region": "us-east-1"}
TABLES = ("inspection", "detector_run", "finding", "evidence_map", "dataset", "dataset_image",
          "job", "detector_version", "app_user", "api_token", "station_key", "audit_event",
          "idempotency_key", "review_item", "inspection_review", "inspection_rollup")


def encode(image: np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def server_answers(url: str, port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def postgres_available() -> bool:
    return server_answers(PG_URL, 5432)


def mariadb_available() -> bool:
    return server_answers(MARIADB_URL, 3306)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (not just a schema: separate processes can share it by
    URL alone), dropped afterwards."""
    if not postgres_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 (db 'test', user postgres) does not answer")
    name = f"kensa_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_mariadb_database() -> Iterator[str]:
    if not mariadb_available():
        pytest.skip("MariaDB at 127.0.0.1:3306 (user root, no password) does not answer")
    name = f"kensa_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(MARIADB_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield MARIADB_URL.replace("/test?", f"/{name}?")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server process the test started; kill it if it does not stop in 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def moto_s3() -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback (moto in server mode); yields its URL."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> str:
    """A fresh bucket on the endpoint; its name."""
    import boto3

    name = f"kensa-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_KEYS["s3_region"],
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=name)
    return name


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database: a new SQLite file, a new PostgreSQL schema or a new MariaDB
    database, dropped afterwards (skips when the server does not answer)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'kensa.db'}"
        return
    if kind == "mariadb":
        with fresh_mariadb_database() as url:
            yield url
        return
    if not postgres_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 (db 'test', user postgres) does not answer")
    schema = f"kensa_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_settings(tmp_path: Path, model_dir: Path, database_url: str | None = None,
                  **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_dir=model_dir,
                    database_url=database_url or f"sqlite:///{tmp_path / 'kensa.db'}",
                    serve_client=False, **{"admin_password": ADMIN_PASSWORD, **overrides})


@dataclass
class Service:
    """The running app, an HTTP client for it, and where it keeps its data."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def engine(self) -> sa.Engine:
        return self.app.state.engine

    def files(self) -> set[Path]:
        return {p for p in self.settings.storage_dir.rglob("*") if p.is_file()}

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def counts(self) -> dict[str, int]:
        return {t: self.count(t) for t in TABLES}

    def db_id(self, record_id: str) -> Any:
        """An inspection id as the database stores it (SQLite: 32 hex chars)."""
        return uuid.UUID(record_id).hex if self.engine.dialect.name == "sqlite" else record_id

    async def sign_in_as_admin(self) -> None:
        """Send the admin's token from now on (the harness does it once the database answers)."""
        self.client.headers["Authorization"] = await sign_in(
            self.client, "admin", self.settings.admin_password)

    async def upload(self, image: bytes, name: str = "strip.png",
                     content_type: str = "image/png", **form: str) -> httpx.Response:
        return await self.client.post("/api/v1/inspections", data=form,
                                      files={"image": (name, image, content_type)})


async def wait_ready(client: httpx.AsyncClient, timeout: float = 180) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get("/readyz")
        body = response.json()
        if response.status_code == 200 or body.get("status") == "failed":
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"service not ready after {timeout} s: {body}")
        await anyio.sleep(0.05)


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> str:
    """An ``Authorization`` header value for the user."""
    response = await client.post("/api/v1/auth/token",
                                 data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return f"Bearer {response.json()['access_token']}"


@asynccontextmanager
async def running_service(settings: Settings, ready: bool = True) -> AsyncIterator[Service]:
    """The app with its lifespan running, behind httpx.ASGITransport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                     timeout=120) as client:
            if ready:
                response = await wait_ready(client)
                assert response.status_code == 200, response.text
            service = Service(app=app, client=client, settings=settings)
            if settings.admin_password and (ready or app.state.db_ready):
                await service.sign_in_as_admin()
            yield service


@dataclass
class LiveServer:
    url: str
    settings: Settings
    headers: dict[str, str] | None = None  # signed in as the admin
