"""Job heartbeats on the real databases: a worker's beats keep its job alive, a job whose
worker went silent (its host stopped for good) is failed as lost by any replica, and what is
fresh, queued or finished is left alone."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from backend_testing import fresh_database, make_settings, running_service
from sqlmodel import Session

from kensa.backend import db
from kensa.backend.jobs import state
from kensa.backend.records import Job

pytestmark = pytest.mark.anyio
DATABASES = ("sqlite", "postgresql", "mariadb")
LONG_AGO = timedelta(minutes=10)


def _add(engine, **fields) -> uuid.UUID:
    with Session(engine) as session, session.begin():
        job = Job(kind="train", progress=0.3, params={}, **fields)
        session.add(job)
        session.flush()
        return job.id


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_silent_worker_s_job_is_failed_on_any_host(kind: str, tmp_path: Path,
                                                           model_dir: Path) -> None:
    old = state.now() - LONG_AGO
    with fresh_database(kind, tmp_path) as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        ids = {
            "silent_elsewhere": _add(engine, status="running", worker="4242@another-host",
                                     started_at=old, heartbeat_at=old),
            "silent_no_beat": _add(engine, status="running", worker="4243@another-host",
                                   started_at=old),
            "beating_elsewhere": _add(engine, status="running", worker="4244@another-host",
                                      started_at=old, heartbeat_at=state.now()),
            "queued_long": _add(engine, status="queued", runner="celery", created_at=old),
            "finished_long": _add(engine, status="succeeded", started_at=old,
                                  heartbeat_at=old, finished_at=old),
        }
        engine.dispose()
        settings = make_settings(tmp_path, model_dir, database_url=url,
                                 job_lost_after_s=120, job_heartbeat_s=0.5)
        async with running_service(settings) as svc:
            deadline = anyio.current_time() + 30
            while True:
                jobs = {key: (await svc.client.get(f"/api/v1/jobs/{job_id}")).json()
                        for key, job_id in ids.items()}
                if all(jobs[k]["status"] == "failed" for k in ("silent_elsewhere",
                                                               "silent_no_beat")):
                    break
                assert anyio.current_time() < deadline, jobs
                await anyio.sleep(0.3)
    assert {k: j["status"] for k, j in jobs.items()} == {
        "silent_elsewhere": "failed", "silent_no_beat": "failed",
        "beating_elsewhere": "running", "queued_long": "queued",
        "finished_long": "succeeded"}
    message = jobs["silent_elsewhere"]["message"]
    assert message.startswith("lost:") and "4242@another-host" in message
    assert "120 s" in message and jobs["silent_elsewhere"]["finished_at"]


@pytest.mark.parametrize("kind", DATABASES)
def test_heartbeat_beats_until_the_job_is_final(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path) as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        start = state.now() - LONG_AGO
        job_id = _add(engine, status="running", worker="1@here", started_at=start,
                      heartbeat_at=start)
        try:
            with state.Heartbeat(engine, job_id, interval=0.2) as beat:
                deadline = time.monotonic() + 20
                while state.read(engine, job_id).heartbeat_at.replace(tzinfo=None) <= (
                        start.replace(tzinfo=None)):
                    assert time.monotonic() < deadline, "no heartbeat written"
                    time.sleep(0.1)
                assert state.fail_lost(engine, timedelta(seconds=60)) == 0  # it beats
                state.write(engine, job_id, status="cancelled", finished_at=state.now())
                assert beat.stopped.wait(10), "the heartbeat did not notice the final row"
            assert state.read(engine, job_id).status == "cancelled"
        finally:
            engine.dispose()


async def test_a_real_worker_beats_while_it_trains(tmp_path: Path, model_dir: Path) -> None:
    """A train job in a real worker process writes heartbeats and is not taken for lost."""
    from test_teach import make_dataset, train

    settings = make_settings(tmp_path, model_dir, job_heartbeat_s=0.2, job_lost_after_s=60)
    async with running_service(settings) as svc:
        dataset = await make_dataset(svc.client, "beats")
        job = await train(svc.client, dataset)
        with Session(svc.engine) as session:
            row = session.get(Job, uuid.UUID(job["id"]))
            assert row.heartbeat_at is not None and row.heartbeat_at > row.started_at
