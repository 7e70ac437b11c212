"""The Celery runner: the same training job through the real Redis and a real celery worker
process started here; progress followed over server-sent events."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_testing import make_settings, running_service
from test_teach import inspect, make_dataset, wait_job

from kensa.backend.config import Settings
from kensa.backend.jobs.runner import worker_env

pytestmark = pytest.mark.anyio
BROKER = "redis://127.0.0.1:6379/0"


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def celery_settings(tmp_path: Path, model_dir: Path) -> Iterator[Settings]:
    if not redis_available():
        pytest.skip("Redis at 127.0.0.1:6379 does not answer")
    settings = make_settings(tmp_path, model_dir, job_runner="celery", broker_url=BROKER,
                             celery_queue=f"kensa-test-{uuid.uuid4().hex[:8]}")
    settings.ensure_dirs()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "kensa.backend.jobs.celery_app", "worker",
         "-P", "solo", "-c", "1", "-Q", settings.celery_queue, "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=worker_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield settings
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


async def test_celery_runner_trains_a_version(celery_settings: Settings) -> None:
    async with running_service(celery_settings) as svc:
        client = svc.client
        await make_dataset(client, "cel", n_good=8, n_defect=1)
        response = await client.post("/api/v1/jobs", json={
            "kind": "train", "dataset": "cel", "detector": "patchcore", "name": "patchcore",
            "quick": True})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        events = []
        async with client.stream("GET", f"/api/v1/jobs/{job_id}/events",
                                 timeout=300) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        progress = [e["progress"] for e in events if "progress" in e]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert events[-1] == {"status": "succeeded"}
        job, _ = await wait_job(client, job_id)
        assert job["status"] == "succeeded" and job["runner"] == "celery"
        versions = (await client.get("/api/v1/detectors/patchcore/versions")).json()
        assert [v["version"] for v in versions] == [job["version"]]
        response = await client.post(
            f"/api/v1/detectors/patchcore/versions/{job['version']}/activate")
        assert response.status_code == 200
        record = await inspect(svc)
        assert record["detectors"] == [{"name": "patchcore", "version": job["version"]}]
