"""kill -9 in the middle of concurrent uploads: after a restart on the same data every upload
that got a 201 is there with its photo and overlay, nothing is half-written, and the blobs the
killed process wrote but never committed are swept. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from backend_testing import ADMIN_PASSWORD, encode, free_port, fresh_database

REPO = Path(__file__).resolve().parents[2]
N_UPLOADS = 24
BLOB_COLUMNS = (("inspection", "image_key"), ("inspection", "overlay_key"),
                ("finding", "mask_key"), ("evidence_map", "map_key"))


def _serve(data_dir: Path, model: Path, database_url: str, port: int,
           grace_s: str) -> subprocess.Popen:
    env = {**os.environ, "KENSA_ADMIN_PASSWORD": ADMIN_PASSWORD, "OMP_NUM_THREADS": "1",
           "KENSA_DATABASE_URL": database_url, "KENSA_STORAGE_SWEEP_GRACE_S": grace_s}
    log = (data_dir / f"serve-{port}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "kensa.cli", "serve", "--no-client", "--port", str(port),
         "--data-dir", str(data_dir), "--model", str(model)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _ready(url: str, proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, "kensa serve exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                token = httpx.post(f"{url}/api/v1/auth/token", data={
                    "username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
                return token
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("kensa serve did not become ready")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def test_kill_9_mid_batch_loses_no_acknowledged_upload(tmp_path: Path, patchcore_artifact: Path,
                                                       database_url: str, strips) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    photos = [encode(strips.defective(i).image if i % 2 else strips.good(i).image)
              for i in range(N_UPLOADS)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data_dir, patchcore_artifact, database_url, port, grace_s="600")
    token = _ready(url, proc)
    acknowledged: dict[int, str] = {}
    lock = threading.Lock()

    def upload(i: int) -> None:
        try:
            response = httpx.post(f"{url}/api/v1/inspections", timeout=60,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Idempotency-Key": f"photo-{i}"},
                                  files={"image": (f"{i}.png", photos[i], "image/png")})
        except httpx.HTTPError:
            return  # the server died under this request: not acknowledged
        if response.status_code == 201:
            with lock:
                acknowledged[i] = response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(upload, i) for i in range(N_UPLOADS)]
        deadline = time.monotonic() + 120
        while len(acknowledged) < N_UPLOADS // 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the batch
        proc.wait(timeout=30)
        for future in futures:
            future.result()
    assert 0 < len(acknowledged) < N_UPLOADS, len(acknowledged)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data_dir, patchcore_artifact, database_url, port, grace_s="0")
    try:
        token = _ready(url, proc)
        auth = {"Authorization": f"Bearer {token}"}
        for i, record_id in acknowledged.items():
            record = httpx.get(f"{url}/api/v1/inspections/{record_id}", headers=auth)
            assert record.status_code == 200, record.text
            image = httpx.get(f"{url}{record.json()['image_url']}", headers=auth)
            assert image.status_code == 200 and image.content == photos[i]
            overlay = httpx.get(f"{url}{record.json()['overlay_url']}", headers=auth)
            assert overlay.status_code == 200 and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"
        time.sleep(0.5)  # the start-up sweep runs in the background
        deadline = time.monotonic() + 30
        while True:
            files, referenced, runs_without_rows = _consistency(database_url, data_dir)
            if files <= referenced or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not [p for p in (data_dir / "blobs").rglob("*") if p.name.startswith(".tmp")]
        assert files == referenced  # no orphan blob left, no row pointing at a missing blob
        assert runs_without_rows == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _consistency(database_url: str, data_dir: Path) -> tuple[set[str], set[str], int]:
    """(blob keys in the store, blob keys the rows reference, inspections without a run)."""
    from kensa.backend.services.storage import LocalBlobStore

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            referenced = set()
            for table, column in BLOB_COLUMNS:
                referenced |= set(conn.execute(sa.text(
                    f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")).scalars())
            orphans = conn.execute(sa.text(
                "SELECT count(*) FROM inspection i WHERE NOT EXISTS "
                "(SELECT 1 FROM detector_run r WHERE r.inspection_id = i.id)")).scalar_one()
    finally:
        engine.dispose()
    stored = {blob.key for blob in LocalBlobStore(data_dir / "blobs").blobs()}
    return stored, referenced, int(orphans)
