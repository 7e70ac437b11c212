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
            "KENSA_VERSION_POLL_S": "1",
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


def test_an_activation_through_one_replica_takes_effect_on_the_other(replicas: list[str],
                                                                     strips) -> None:
    """Train and activate through replica a; replica b serves the version without a restart
    (it follows the database), and a rollback through b reaches a."""
    one, other = replicas
    token = httpx.post(f"{one}/api/v1/auth/token", data={
        "username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    client = httpx.Client(headers=auth, timeout=600)  # a loaded machine is slow, not wrong
    dataset = client.post(f"{one}/api/v1/datasets", json={"name": "shared"}).json()
    response = client.post(f"{one}/api/v1/datasets/{dataset['id']}/images", files=[
        ("image", (f"{i}.png", encode(strips.good(20 + i).image), "image/png"))
        for i in range(8)])
    assert response.status_code == 201, response.text

    def train() -> str:
        job = client.post(f"{one}/api/v1/jobs", json={
            "kind": "train", "dataset": "shared", "detector": "patchcore", "name": "patchcore",
            "quick": True}).json()
        deadline = time.monotonic() + 600
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
            job = client.get(f"{one}/api/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job["message"]
        return job["version"]

    def served(url: str) -> str:
        record = client.post(f"{url}/api/v1/inspections", files={
            "image": ("s.png", encode(strips.good(3).image), "image/png")}).json()
        return record["detectors"][0]["version"]

    def wait_served(url: str, version: str) -> None:
        deadline = time.monotonic() + 120
        while (now := served(url)) != version:
            assert time.monotonic() < deadline, f"{url} still serves {now}, not {version}"
            time.sleep(0.5)

    original = served(other)
    first, second = train(), train()
    assert client.post(f"{one}/api/v1/detectors/patchcore/versions/{first}/activate"
                       ).status_code == 200
    assert served(one) == first  # at once where it was activated
    wait_served(other, first)
    assert original != first
    assert client.post(f"{one}/api/v1/detectors/patchcore/versions/{second}/shadow"
                       ).status_code == 200
    assert client.post(f"{other}/api/v1/detectors/patchcore/versions/{second}/activate"
                       ).status_code == 200
    wait_served(one, second)
    assert client.post(f"{other}/api/v1/detectors/patchcore/versions/{first}/activate"
                       ).status_code == 200  # rollback through the other replica
    wait_served(one, first)
    assert served(other) == first
