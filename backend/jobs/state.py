"""Job rows: the one place any runner's worker reports progress and the API reads it."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlmodel import Session

from kensa.backend.records import Job
from kensa.contract.schemas import JOB_FINAL, JobPublic

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def write(engine: Engine, job_id: uuid.UUID, **fields: Any) -> bool:
    """Update a job unless it already reached a final status; True when a row changed."""
    with Session(engine) as session, session.begin():
        result = session.execute(update(Job).where(Job.id == job_id,
                                                   Job.status.not_in(JOB_FINAL))
                                 .values(**fields))
        return result.rowcount > 0


def read(engine: Engine, job_id: uuid.UUID) -> Job | None:
    with Session(engine) as session:
        return session.get(Job, job_id)


def public(job: Job) -> JobPublic:
    return JobPublic(id=job.id, kind=job.kind, status=job.status, progress=job.progress,
                     message=job.message, version=job.version, metrics=job.metrics or {},
                     params=job.params or {}, runner=job.runner, created_at=job.created_at,
                     started_at=job.started_at, finished_at=job.finished_at)


def claim(engine: Engine, job_id: uuid.UUID, worker: str) -> bool:
    """Take a queued job for this service (atomic: of two replicas polling the same database,
    only one gets it)."""
    with Session(engine) as session, session.begin():
        result = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                                 .values(status="running", worker=worker, heartbeat_at=now()))
        return result.rowcount > 0


def _alive(worker: str | None, host: str) -> bool:
    """Whether ``pid@host`` (a worker) or ``claimed-by-pid@host`` (the service launching it)
    names a process still running on this host."""
    pid, _, where = (worker or "").removeprefix("claimed-by-").partition("@")
    if where != host or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_interrupted(engine: Engine, runner: str, host: str | None = None) -> int:
    """Mark the jobs a restart interrupted as failed (called at startup): the running jobs of
    ``runner`` with no worker, or whose worker process on this host is gone. Jobs run by
    another host's replica, or by a worker that outlived its service, are left running."""
    host = host or socket.gethostname()
    with Session(engine) as session, session.begin():
        rows = session.execute(select(Job.id, Job.worker).where(
            Job.status == "running", Job.runner == runner)).all()
        lost = [job_id for job_id, worker in rows
                if worker is None or (worker.endswith(f"@{host}") and not _alive(worker, host))]
        if not lost:
            return 0
        result = session.execute(update(Job).where(Job.id.in_(lost), Job.status == "running")
                                 .values(status="failed", finished_at=now(), message=(
                                     "interrupted: the service restarted while the job was "
                                     "running")))
        return result.rowcount


class Heartbeat:
    """While a worker runs a job, a thread writes ``heartbeat_at`` every ``interval`` seconds
    (a database hiccup is logged and retried at the next beat); ``stopped`` is set once the
    row is final (cancelled, or failed as lost), so the work can stop too."""

    def __init__(self, engine: Engine, job_id: uuid.UUID, interval: float) -> None:
        self.engine, self.job_id, self.interval = engine, job_id, interval
        self.stopped = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="kensa-job-heartbeat",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.interval + 5)

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                if not write(self.engine, self.job_id, heartbeat_at=now()):
                    self.stopped.set()
                    return
            except Exception as exc:  # an outage: the next beat tries again
                log.warning("job %s heartbeat failed: %s: %s", self.job_id,
                            type(exc).__name__, exc)


def fail_lost(engine: Engine, lost_after: timedelta) -> int:
    """Fail the running jobs whose worker has not written for ``lost_after`` (heartbeat, else
    start, else creation time), on any host: a machine that stopped for good leaves no
    process to ask, only silence."""
    cutoff = now() - lost_after
    seconds = int(lost_after.total_seconds())
    last = func.coalesce(Job.heartbeat_at, Job.started_at, Job.created_at)
    with Session(engine) as session, session.begin():
        rows = session.execute(select(Job.id, Job.worker).where(
            Job.status == "running", last < cutoff)).all()
        if not rows:
            return 0
        failed = 0
        for job_id, worker in rows:
            result = session.execute(
                update(Job).where(Job.id == job_id, Job.status == "running", last < cutoff)
                .values(status="failed", finished_at=now(), message=(
                    f"lost: its worker ({worker or 'none'}) has not reported for over "
                    f"{seconds} s; its machine or process stopped")))
            failed += result.rowcount
        return failed
