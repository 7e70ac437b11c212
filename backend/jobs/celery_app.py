"""The Celery side of the job runner: ``celery -A kensa.backend.jobs.celery_app worker``
(settings, incl. ``KENSA_BROKER_URL``, from the worker's environment)."""

from __future__ import annotations

import uuid

from celery import Celery

from kensa.backend.config import Settings


def make_celery(broker_url: str, queue: str = "kensa") -> Celery:
    app = Celery("kensa", broker=broker_url)
    app.conf.update(task_default_queue=queue, task_acks_late=True, worker_prefetch_multiplier=1,
                    task_ignore_result=True, broker_connection_retry_on_startup=True)

    @app.task(name="kensa.run_job")
    def run_job(job_id: str) -> None:
        from kensa.backend.jobs.worker import lower_priority
        from kensa.backend.jobs.worker import run_job as run

        lower_priority()
        run(Settings(), uuid.UUID(job_id))

    return app


_settings = Settings()
app = make_celery(_settings.broker_url, _settings.celery_queue)
