"""Two `kensa serve` processes sharing one PostgreSQL database and one S3 store (moto on
loopback): what one replica records, the other serves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from backend_testing import (
    ADMIN_PASSWORD,
    S3_KEYS,
    encode,
    free_port,
    fresh_postgres_database,
    new_bucket,
    stop_process,
)

pytestmark = [pytest.mark.postgres, pytest.mark.replicas]
REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 180


def _start(port: int, data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    log = data_dir / "serve.log"
    data_dir.mkdir(parents=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kensa.cli", "serve", "--no-client", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(data_dir)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kensa serve exited with {proc.returncode}:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT} s:\n{log.read_text()[-3000:]}")



@pytest.fixture
def replicas(tmp_path: Path, model_dir: Path, s3_endpoint: str) -> Iterator[list[str]]:
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database())
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "KENSA_DATABASE_URL": database_url, "KENSA_MODEL_DIR": str(model_dir),
            "KENSA_STORAGE_URL": f"s3://{new_bucket(s3_endpoint)}/kensa",
            "KENSA_S3_ENDPOINT_URL": s3_endpoint, "KENSA_ADMIN_PASSWORD": ADMIN_PASSWORD,
            **{f"KENSA_{k.upper()}": v for k, v in S3_KEYS.items()},
        }
        started = []
        for name in ("a", "b"):
            port = free_port()
            proc, log = _start(port, tmp_path / name, env)
            stack.callback(stop_process, proc)
            started.append((f"http://127.0.0.1:{port}", proc, log))
        for url, proc, log in started:
            _wait_ready(url, proc, log)
        yield [url for url, _, _ in started]


def test_an_upload_through_one_replica_is_served_by_the_other(replicas: list[str], strips,
                                                              tmp_path: Path) -> None:
    one, other = replicas
    token = httpx.post(f"{one}/api/v1/auth/token", data={  # signed in on one replica ...
        "username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}  # ... valid on the other (shared database)
    photo = encode(strips.defective(11, labels=["patches"]).image)
    response = httpx.post(f"{one}/api/v1/inspections", data={"station": "replica-a"},
                          headers=auth,
                          files={"image": ("strip.png", photo, "image/png")}, timeout=120)
    assert response.status_code == 201, response.text
    record = response.json()

    seen = httpx.get(f"{other}/api/v1/inspections/{record['id']}", headers=auth, timeout=30)
    assert seen.status_code == 200 and seen.json() == {**record, "notice": None}
    listing = httpx.get(f"{other}/api/v1/inspections", headers=auth, timeout=30).json()
    assert [item["id"] for item in listing["items"]] == [record["id"]]

    image = httpx.get(other + record["image_url"], headers=auth, timeout=30)
    assert image.status_code == 200 and image.content == photo
    assert image.headers["content-type"] == "image/png"
    overlay_one = httpx.get(one + record["overlay_url"], headers=auth, timeout=30)
    overlay_other = httpx.get(other + record["overlay_url"], headers=auth, timeout=30)
    assert overlay_other.status_code == 200 and overlay_other.content.startswith(b"\x89PNG")
    assert overlay_other.content == overlay_one.content
    rerendered = httpx.get(other + record["overlay_url"], params={"layers": "heatmap"},
                           headers=auth, timeout=60)
    assert rerendered.status_code == 200 and rerendered.content.startswith(b"\x89PNG")
    # and the other way round: the second replica writes, the first reads
    second = httpx.post(f"{other}/api/v1/inspections", headers=auth,
                        files={"image": ("good.png", encode(strips.good(12).image),
                                         "image/png")}, timeout=120).json()
    back = httpx.get(one + second["image_url"], headers=auth, timeout=30)
    assert back.status_code == 200 and back.content == encode(strips.good(12).image)
    for name in ("a", "b"):  # the blobs live in S3 only
        assert not list((tmp_path / name).rglob("*.png"))
