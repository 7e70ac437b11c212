"""A database that goes away and comes back: 503 with Retry-After (never a 500 or a hang),
/readyz says so, and kensa recovers by itself. The test runs its own PostgreSQL server (initdb
in a temporary folder), so stopping it disturbs nobody."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from backend_testing import Service, encode, make_settings, running_service

pytestmark = pytest.mark.anyio

PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnPostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (run as the postgres user when
    the tests run as root, since initdb refuses root)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = _free_port()
        self.log = root / "postgres.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.root, "postgres")
        self._run(f"{PG_BIN}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")

    def start(self) -> None:
        self._run(f"{PG_BIN}/pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._run(f"{PG_BIN}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if PG_BIN is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # not under pytest's tmp folder: that is private to root, and the server runs as postgres
    server = OwnPostgres(Path(tempfile.mkdtemp(prefix="kensa-own-pg-")))
    try:
        server.init()
        yield server
    finally:
        subprocess.run([*server._as, f"{PG_BIN}/pg_ctl", "-D", str(server.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(server.root, ignore_errors=True)


async def _upload(service: Service, image: bytes) -> tuple[int, dict, dict]:
    with anyio.fail_after(30):  # never a hang
        response = await service.client.post(
            "/api/v1/inspections", files={"image": ("a.png", image, "image/png")})
    return response.status_code, dict(response.headers), response.json()


async def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await anyio.sleep(0.5)


async def test_outage_mid_run_503_then_recovery(own_postgres: OwnPostgres, tmp_path: Path,
                                                model_dir: Path, strips) -> None:
    own_postgres.start()
    image = encode(strips.good(3).image)
    settings = make_settings(tmp_path, model_dir, own_postgres.url)
    async with running_service(settings) as service:
        status, _, first = await _upload(service, image)
        assert status == 201

        await anyio.to_thread.run_sync(own_postgres.stop)
        status, headers, body = await _upload(service, image)
        assert status == 503, body
        assert int(headers["retry-after"]) > 0 and "database" in body["detail"]
        listed = await service.client.get("/api/v1/inspections")
        assert listed.status_code == 503 and "retry-after" in listed.headers
        ready = await service.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "database"

        await anyio.to_thread.run_sync(own_postgres.start)  # kensa is not restarted
        status, _, again = await _upload(service, image)
        assert status == 201, again
        assert (await service.client.get("/readyz")).status_code == 200
        listed = (await service.client.get("/api/v1/inspections")).json()
        assert {item["id"] for item in listed["items"]} == {first["id"], again["id"]}


async def test_unreachable_at_start_then_ready_without_a_restart(
        own_postgres: OwnPostgres, tmp_path: Path, model_dir: Path, strips) -> None:
    settings = make_settings(tmp_path, model_dir, own_postgres.url)
    async with running_service(settings, ready=False) as service:
        ready = await service.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "database"
        status, headers, _ = await _upload(service, encode(strips.good(4).image))
        assert status == 503 and "retry-after" in headers

        await anyio.to_thread.run_sync(own_postgres.start)

        async def is_ready() -> bool:
            return (await service.client.get("/readyz")).status_code == 200

        await _until(is_ready)
        await service.sign_in_as_admin()
        status, _, record = await _upload(service, encode(strips.good(4).image))
        assert status == 201, record
