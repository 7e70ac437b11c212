"""Job rows: the one place any runner's worker reports progress and the API reads it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session

from kensa.backend.records import Job
from kensa.contract.schemas import JOB_FINAL, JobPublic


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


def fail_interrupted(engine: Engine, runner: str) -> int:
    """Mark the jobs a restart interrupted as failed (called at startup)."""
    with Session(engine) as session, session.begin():
        result = session.execute(update(Job).where(Job.status == "running",
                                                   Job.runner == runner).values(
            status="failed", finished_at=now(),
            message="interrupted: the service restarted while the job was running"))
        return result.rowcount
