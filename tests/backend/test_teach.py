"""Teach, train, deploy through real HTTP: datasets, a training job in a real worker process,
versions, activation, rollback, shadow, cancel, a killed worker, bad input."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from backend_testing import STRIP_SIZE, Service, encode

from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.anyio
GEN = SteelStripGenerator(size=STRIP_SIZE, seed=11)


def good_pngs(n: int, start: int = 0) -> list[bytes]:
    return [encode(GEN.good(start + i).image) for i in range(n)]


def defect_pngs(n: int) -> list[bytes]:
    return [encode(GEN.defective(i).image) for i in range(n)]


def files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


async def make_dataset(client: httpx.AsyncClient, name: str, n_good: int = 8,
                       n_defect: int = 2) -> str:
    response = await client.post("/api/v1/datasets", json={"name": name, "station": "s1"})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["counts"] == {}
    response = await client.post(f"/api/v1/datasets/{dataset['id']}/images",
                                 files=files(good_pngs(n_good)))
    assert response.status_code == 201, response.text
    assert response.json() == {"added": n_good, "counts": {"good": n_good}}
    if n_defect:
        response = await client.post(f"/api/v1/datasets/{dataset['id']}/images",
                                     files=files(defect_pngs(n_defect)),
                                     data={"label": "scratches"})
        assert response.status_code == 201, response.text
    return dataset["id"]


async def wait_job(client: httpx.AsyncClient, job_id: str, until=("succeeded", "failed",
                   "cancelled"), timeout: float = 300) -> tuple[dict, list[float]]:
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        seen.append(job["progress"])
        if job["status"] in until:
            return job, seen
        assert time.monotonic() < deadline, job
        await _sleep(0.2)


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def train(client: httpx.AsyncClient, dataset: str, **config) -> dict:
    response = await client.post("/api/v1/jobs", json={
        "kind": "train", "dataset": dataset, "detector": "patchcore", "name": "patchcore",
        "quick": True, "config": config, "created_by": "tester"})
    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("queued", "running")
    job, seen = await wait_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job["message"]
    assert seen == sorted(seen) and job["progress"] == 1.0
    return job


async def inspect(svc: Service) -> dict:
    response = await svc.upload(encode(GEN.good(50).image))
    assert response.status_code == 201, response.text
    return response.json()


async def test_teach_train_activate_shadow_rollback(sqlite_service: Service) -> None:
    svc, client = sqlite_service, sqlite_service.client
    dataset = await make_dataset(client, "line-1")
    record = await inspect(svc)
    original = record["detectors"][0]["version"]
    response = await client.post(f"/api/v1/datasets/{dataset}/images",
                                 json={"inspection_ids": [record["id"]], "label": "good"})
    assert response.status_code == 201, response.text
    assert response.json() == {"added": 1, "counts": {"good": 9, "scratches": 2}}
    listed = (await client.get("/api/v1/datasets")).json()
    assert [d["name"] for d in listed] == ["line-1"]

    first = await train(client, "line-1")
    metrics = first["metrics"]
    assert 0.0 <= metrics["false_alarm_rate"] <= 1.0
    assert metrics["image_auroc"] is not None and metrics["n_holdout_defect"] == 2
    versions = (await client.get("/api/v1/detectors/patchcore/versions")).json()
    assert [(v["version"], v["state"]) for v in versions] == [(first["version"],
                                                               "candidate")]
    # the signed-in caller, not the "tester" the body claimed
    assert versions[0]["created_by"] == "admin" and versions[0]["dataset"] == dataset

    response = await client.post(
        f"/api/v1/detectors/patchcore/versions/{first['version']}/activate")
    assert response.status_code == 200, response.text
    after = await inspect(svc)
    assert after["detectors"] == [{"name": "patchcore", "version": first["version"]}]
    assert after["runs"][0]["threshold_method"]
    assert original != first["version"]

    second = await train(client, "line-1", coreset_ratio=0.5)
    assert second["version"] != first["version"]
    versions = (await client.get("/api/v1/detectors/patchcore/versions")).json()
    assert versions[1]["parent"] == first["version"]
    response = await client.post(
        f"/api/v1/detectors/patchcore/versions/{second['version']}/shadow")
    assert response.status_code == 200, response.text
    shadowed = await inspect(svc)
    assert [r["version"] for r in shadowed["runs"]] == [first["version"]]
    assert shadowed["detectors"] == after["detectors"]
    assert svc.count("detector_run") == 4  # three shown runs and one shadow run
    versions = {v["version"]: v for v in
                (await client.get("/api/v1/detectors/patchcore/versions")).json()}
    agreement = versions[second["version"]]["shadow_agreement"]
    assert agreement["inspections"] == 1 and agreement["rate"] in (0.0, 1.0)

    await client.post(f"/api/v1/detectors/patchcore/versions/{second['version']}/activate")
    assert (await inspect(svc))["detectors"][0]["version"] == second["version"]
    # rollback
    await client.post(f"/api/v1/detectors/patchcore/versions/{first['version']}/activate")
    assert (await inspect(svc))["detectors"][0]["version"] == first["version"]
    states = {v["version"]: v["state"] for v in
              (await client.get("/api/v1/detectors/patchcore/versions")).json()}
    assert states == {first["version"]: "active", second["version"]: "candidate"}


async def test_cancel_and_killed_worker(sqlite_service: Service) -> None:
    client = sqlite_service.client
    await make_dataset(client, "c", n_good=8, n_defect=0)
    body = {"kind": "train", "dataset": "c", "detector": "patchcore", "name": "p2",
            "quick": True}
    job = (await client.post("/api/v1/jobs", json=body)).json()
    response = await client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert (await client.post(f"/api/v1/jobs/{job['id']}/cancel")).status_code == 409

    job = (await client.post("/api/v1/jobs", json=body)).json()
    _running, _ = await wait_job(client, job["id"], until=("running",))
    from kensa.backend.jobs import state

    worker = None
    for _ in range(200):
        worker = state.read(sqlite_service.engine, __import__("uuid").UUID(job["id"])).worker
        if worker and worker.split("@")[0].isdigit():  # the worker's pid, not the claim
            break
        await _sleep(0.05)
    os.kill(int(worker.split("@")[0]), signal.SIGKILL)
    failed, _ = await wait_job(client, job["id"])
    assert failed["status"] == "failed"
    assert "killed by signal 9" in failed["message"]
    assert (await client.get("/api/v1/detectors/p2/versions")).json() == []


async def test_bad_input_writes_nothing(sqlite_service: Service, tmp_path: Path) -> None:
    svc, client = sqlite_service, sqlite_service.client
    assert (await client.post("/api/v1/datasets/nope/images",
                              files=files(good_pngs(1)))).status_code == 404
    dataset = (await client.post("/api/v1/datasets", json={"name": "d"})).json()
    assert (await client.post("/api/v1/datasets", json={"name": "d"})).status_code == 409
    assert (await client.post("/api/v1/datasets", json={"name": ""})).status_code == 422
    before_files, before_rows = svc.files(), svc.counts()
    url = f"/api/v1/datasets/{dataset['id']}/images"
    bad = [("image", ("a.png", good_pngs(1)[0], "image/png")),
           ("image", ("b.png", b"not an image at all", "image/png"))]
    response = await client.post(url, files=bad)
    assert response.status_code in (415, 422), response.text
    assert "image 2" in response.json()["detail"]
    response = await client.post(url, data={"label": "good"}, files={"other": ("x", b"1")})
    assert response.status_code == 422
    response = await client.post(url, json={"inspection_ids": [
        "00000000-0000-0000-0000-000000000000"]})
    assert response.status_code == 404
    assert (await client.post(url, content=b"x",
                              headers={"content-type": "text/plain"})).status_code == 415
    assert svc.files() == before_files and svc.counts() == before_rows
    assert (await client.get(f"/api/v1/datasets/{dataset['id']}")).json()["counts"] == {}

    def job(**overrides) -> dict:
        return {"kind": "train", "dataset": "d", "detector": "patchcore", "name": "x",
                **overrides}

    assert (await client.post("/api/v1/jobs", json=job())).status_code == 422  # empty
    assert (await client.post("/api/v1/jobs", json=job(dataset="zz"))).status_code == 404
    response = await client.post("/api/v1/jobs", json=job(detector="nonesuch"))
    assert response.status_code == 422 and "unknown detector kind" in response.text
    assert (await client.post("/api/v1/jobs", json=job(kind="dance"))).status_code == 422
    assert (await client.get("/api/v1/jobs")).json() == []
    missing = "/api/v1/detectors/patchcore/versions/nope/activate"
    assert (await client.post(missing)).status_code == 404
    assert (await client.get(
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000")).status_code == 404


async def test_job_running_at_a_restart_is_marked_failed(tmp_path: Path, model_dir: Path
                                                        ) -> None:
    from backend_testing import make_settings, running_service
    from sqlmodel import Session

    from kensa.backend import db
    from kensa.backend.records import Job

    settings = make_settings(tmp_path, model_dir)
    settings.ensure_dirs()
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    with Session(engine) as session, session.begin():
        job = Job(kind="train", status="running", progress=0.4, params={})
        session.add(job)
        session.flush()
        job_id = str(job.id)
    engine.dispose()
    async with running_service(settings) as svc:
        body = (await svc.client.get(f"/api/v1/jobs/{job_id}")).json()
        assert body["status"] == "failed" and "interrupted" in body["message"]


async def _served_version(client: httpx.AsyncClient, name: str) -> str:
    listed = (await client.get("/api/v1/detectors")).json()
    return next(d["version"] for d in listed if d["name"] == name)


async def _wait_served(client: httpx.AsyncClient, name: str, version: str,
                       timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (served := await _served_version(client, name)) != version:
        assert time.monotonic() < deadline, f"replica still serves {served}, not {version}"
        await _sleep(0.2)


async def test_a_replica_follows_activations_made_elsewhere(tmp_path: Path, model_dir: Path
                                                            ) -> None:
    """Two services on one database and one storage (two replicas behind a proxy): a version
    activated through one, and the rollback, reach the other's inspections without a restart."""
    from backend_testing import make_settings, running_service

    settings = make_settings(tmp_path, model_dir, version_poll_s=0.2)
    async with running_service(settings) as first, running_service(settings) as second:
        shipped = await _served_version(second.client, "patchcore")
        await make_dataset(first.client, "replicas")
        older, newer = await train(first.client, "replicas"), await train(
            first.client, "replicas", coreset_ratio=0.5)
        assert await _served_version(second.client, "patchcore") == shipped  # candidates
        for version in (newer["version"], older["version"]):  # deploy, then roll back
            response = await first.client.post(
                f"/api/v1/detectors/patchcore/versions/{version}/activate")
            assert response.status_code == 200, response.text
            await _wait_served(second.client, "patchcore", version)
            record = await inspect(second)
            assert record["detectors"] == [{"name": "patchcore", "version": version}]


async def test_a_restart_fails_only_jobs_whose_worker_is_gone(tmp_path: Path, model_dir: Path
                                                              ) -> None:
    """A replica's restart must not fail the job another replica (another host) is running,
    nor one whose worker process outlived its service; a dead local worker's job is failed."""
    import socket
    import subprocess
    import sys

    from backend_testing import make_settings, running_service
    from sqlmodel import Session

    from kensa.backend import db
    from kensa.backend.records import Job

    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    host = socket.gethostname()
    settings = make_settings(tmp_path, model_dir)
    settings.ensure_dirs()
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    workers = {"dead": f"{dead_pid.pid}@{host}", "alive": f"{alive.pid}@{host}",
               "elsewhere": "4242@another-host",
               "claim_lost": f"claimed-by-{dead_pid.pid}@{host}",
               "claim_live": f"claimed-by-{alive.pid}@{host}"}
    ids = {}
    with Session(engine) as session, session.begin():
        for key, worker in workers.items():
            job = Job(kind="train", status="running", progress=0.3, params={}, worker=worker)
            session.add(job)
            session.flush()
            ids[key] = str(job.id)
    engine.dispose()
    try:
        async with running_service(settings) as svc:
            status = {key: (await svc.client.get(f"/api/v1/jobs/{job_id}")).json()["status"]
                      for key, job_id in ids.items()}
    finally:
        alive.kill()
        alive.wait()
    assert status == {"dead": "failed", "alive": "running", "elsewhere": "running",
                      "claim_lost": "failed", "claim_live": "running"}
