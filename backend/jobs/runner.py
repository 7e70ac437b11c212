"""The job runner: ONE interface (``submit``, ``cancel``, ``start``, ``stop``), two real
implementations. ``LocalRunner`` (the embedded default) starts one worker subprocess per job,
niced, at most ``job_concurrency`` at once; ``CeleryRunner`` sends the job to Celery workers
on Redis (several machines). Either way the worker writes the job's row."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from typing import Protocol

from sqlalchemy import Engine, select
from sqlmodel import Session

from kensa.backend.config import Settings
from kensa.backend.jobs import state
from kensa.backend.records import Job

log = logging.getLogger(__name__)


class JobRunner(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def submit(self, job_id: uuid.UUID) -> None: ...
    def cancel(self, job_id: uuid.UUID) -> None: ...


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a worker reads its settings from."""
    env = {**os.environ, "KENSA_DATABASE_URL": settings.database_url,
           "KENSA_STORAGE_DIR": str(settings.storage_dir.resolve()),
           "KENSA_DATA_DIR": str(settings.data_dir.resolve()),
           "KENSA_BROKER_URL": settings.broker_url, "KENSA_CELERY_QUEUE": settings.celery_queue,
           "KENSA_JOB_HEARTBEAT_S": str(settings.job_heartbeat_s),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for field in ("storage_url", "s3_bucket", "s3_prefix", "s3_endpoint_url", "s3_region",
                  "s3_access_key_id", "device"):  # the worker stores where the service does
        value = getattr(settings, field)
        if value:
            env[f"KENSA_{field.upper()}"] = str(value)
    env["KENSA_MODEL_DIR"] = str(settings.model_dir.resolve())  # what a retrain starts from
    if settings.extra_models:
        env["KENSA_EXTRA_MODELS"] = json.dumps([str(p.resolve()) for p in settings.extra_models])
    if settings.s3_secret_access_key is not None:
        env["KENSA_S3_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key.get_secret_value()
    return env


class LocalRunner:
    """Worker subprocesses on this machine, oldest queued job first."""

    name = "local"

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        self.concurrency = settings.job_concurrency
        self._wake = threading.Condition()
        self._procs: dict[uuid.UUID, subprocess.Popen] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        state.fail_interrupted(self.engine, self.name)
        self._thread = threading.Thread(target=self._loop, name="kensa-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for proc in list(self._procs.values()):
            proc.terminate()
        if self._thread:
            self._thread.join(timeout=10)

    def submit(self, job_id: uuid.UUID) -> None:
        with self._wake:
            self._wake.notify_all()

    def cancel(self, job_id: uuid.UUID) -> None:
        state.write(self.engine, job_id, status="cancelled", finished_at=state.now(),
                    message="cancelled")
        proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def _next_queued(self) -> uuid.UUID | None:
        with Session(self.engine) as session:
            return session.execute(select(Job.id).where(Job.status == "queued",
                                                        Job.runner == self.name)
                                   .order_by(Job.created_at).limit(1)).scalars().first()

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                job_id = self._next_queued() if len(self._procs) < self.concurrency else None
                if job_id is None:
                    self._wake.wait(timeout=0.5)
                    continue
            self._launch(job_id)

    def _launch(self, job_id: uuid.UUID) -> None:
        host = socket.gethostname()
        if not state.claim(self.engine, job_id, f"claimed-by-{os.getpid()}@{host}"):
            return  # another replica took it
        proc = subprocess.Popen(
            [sys.executable, "-m", "kensa.backend.jobs.worker", str(job_id)],
            env=worker_env(self.settings), preexec_fn=lambda: os.nice(10),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._procs[job_id] = proc
        state.write(self.engine, job_id, worker=f"{proc.pid}@{host}")
        threading.Thread(target=self._watch, args=(job_id, proc), daemon=True).start()

    def _watch(self, job_id: uuid.UUID, proc: subprocess.Popen) -> None:
        _, err = proc.communicate()
        code = proc.returncode
        if code != 0:
            how = (f"killed by signal {-code}" if code < 0 else f"exited with code {code}")
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            state.write(self.engine, job_id, status="failed", finished_at=state.now(),
                        message=f"the worker process was {how}"
                                + (f": {tail[0]}" if tail else ""))
        with self._wake:
            self._procs.pop(job_id, None)
            self._wake.notify_all()


class CeleryRunner:
    """Jobs go to Celery workers through the broker (Redis by default)."""

    name = "celery"

    def __init__(self, settings: Settings, engine: Engine) -> None:
        from kensa.backend.jobs.celery_app import make_celery

        self.settings, self.engine = settings, engine
        self.app = make_celery(settings.broker_url, settings.celery_queue)

    def start(self) -> None:
        pass  # workers are separate processes; they mark their own interrupted jobs

    def stop(self) -> None:
        pass

    def submit(self, job_id: uuid.UUID) -> None:
        result = self.app.send_task("kensa.run_job", args=[str(job_id)])
        state.write(self.engine, job_id, worker=f"celery:{result.id}")

    def cancel(self, job_id: uuid.UUID) -> None:
        state.write(self.engine, job_id, cancel_requested=True)
        job = state.read(self.engine, job_id)
        if job and job.worker and job.worker.startswith("celery:"):
            self.app.control.revoke(job.worker.split(":", 1)[1], terminate=True)
        state.write(self.engine, job_id, status="cancelled", finished_at=state.now(),
                    message="cancelled")


def make_runner(settings: Settings, engine: Engine) -> JobRunner:
    runners = {"local": LocalRunner, "celery": CeleryRunner}
    if settings.job_runner not in runners:
        raise ValueError(f"KENSA_JOB_RUNNER must be one of {', '.join(runners)}")
    return runners[settings.job_runner](settings, engine)
