"""Run one training job: read the dataset from the store, hold out part of it, fit, evaluate,
store the artifact as a version. Progress goes to the job's row. ``python -m
kensa.backend.jobs.worker JOB_ID`` (settings from the environment) is the local runner's
worker process; the Celery task calls ``run_job`` the same way."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
from PIL import Image
from sqlmodel import Session

from kensa.backend.config import Settings
from kensa.backend.db import make_engine
from kensa.backend.jobs import retrain, state
from kensa.backend.records import Job
from kensa.backend.services import datasets, versions
from kensa.backend.services.storage import make_store
from kensa.models.data.samples import Sample

log = logging.getLogger(__name__)
HOLDOUT_FRACTION = 0.2
MIN_GOOD = 4


def trainable(spec) -> bool:
    """Whether a train job can fit a detector kind from a dataset (good-only kinds)."""
    return spec.learns_from.value == "good-only"


class Cancelled(Exception):
    pass


def lower_priority(increment: int = 10) -> None:
    """Let inference win the CPU (once per process)."""
    if not getattr(lower_priority, "done", False):
        with contextlib.suppress(OSError):
            os.nice(increment)
        lower_priority.done = True  # type: ignore[attr-defined]


def split_holdout(samples: list[Sample], seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(fit, held-out): a fraction of the good images and every labelled defect held out."""
    good = [s for s in samples if s.is_good]
    order = np.random.default_rng(seed).permutation(len(good))
    n_hold = max(1, round(len(good) * HOLDOUT_FRACTION))
    held = [good[i] for i in order[:n_hold]] + [s for s in samples if not s.is_good]
    return [good[i] for i in order[n_hold:]], held


def run_job(settings: Settings, job_id: uuid.UUID) -> None:
    engine = make_engine(settings.database_url)
    try:
        _run(settings, engine, job_id)
    finally:
        engine.dispose()


def _run(settings: Settings, engine, job_id: uuid.UUID) -> None:
    def progress(value: float, message: str) -> None:
        job = state.read(engine, job_id)
        if job is None or job.cancel_requested:
            raise Cancelled()
        state.write(engine, job_id, progress=round(value, 3), message=message)

    worker = f"{os.getpid()}@{socket.gethostname()}"
    if not state.write(engine, job_id, status="running", started_at=state.now(),
                       worker=worker, message="starting"):
        return  # already final (cancelled before it started)
    try:
        job = state.read(engine, job_id)
        if job is not None and job.kind == retrain.KIND:
            metrics, version = retrain.run(settings, engine, job_id, progress)
        else:
            metrics, version = _train(settings, engine, job_id, progress)
        state.write(engine, job_id, status="succeeded", progress=1.0, version=version,
                    metrics=metrics, finished_at=state.now(), message="done")
    except Cancelled:
        state.write(engine, job_id, status="cancelled", finished_at=state.now(),
                    message="cancelled")
    except Exception as exc:
        log.exception("job %s failed", job_id)
        state.write(engine, job_id, status="failed", finished_at=state.now(),
                    message=f"{type(exc).__name__}: {exc}"[:2000])


def _train(settings: Settings, engine, job_id: uuid.UUID, progress) -> tuple[dict, str]:
    from kensa.models.artifacts import save
    from kensa.models.registry import create_detector, get_spec
    from kensa.models.training.anomaly import auto_input_size
    from kensa.models.training.eval_anomaly import evaluate_anomaly

    store = make_store(settings)
    with Session(engine) as session:
        job = session.get(Job, job_id)
        params = dict(job.params)
        rows = datasets.images(session, uuid.UUID(params["dataset_id"]))
    samples = []
    for i, row in enumerate(rows):
        image = np.asarray(Image.open(io.BytesIO(store.read(row.image_key))).convert("RGB"))
        labels = () if row.label == datasets.GOOD else (row.label,)
        samples.append(Sample(labels=labels, image=image, meta={"name": str(row.id)}))
        if i % 5 == 0:
            progress(0.25 * (i + 1) / len(rows), f"reading images {i + 1}/{len(rows)}")
    fit_part, held = split_holdout(samples)
    spec = get_spec(params["detector"])
    config = {**(spec.quick if params.get("quick") else {}), **params.get("config", {})}
    config.setdefault("input_size", auto_input_size(*fit_part[0].load_image().shape[:2]))
    detector = create_detector(params["detector"], name=params["name"], **config)
    progress(0.3, f"fitting {params['detector']} on {len(fit_part)} good images")
    fit_report = detector.fit(fit_part)
    progress(0.75, f"evaluating on {len(held)} held-out images")
    evaluation = evaluate_anomaly(detector, held, split="held-out")
    metrics = {
        "image_auroc": evaluation.get("image_auroc"),
        "false_alarm_rate": evaluation.get("false_positive_rate"),
        "threshold": fit_report.get("threshold"),
        "threshold_method": fit_report.get("threshold_method"),
        "n_fit": fit_report.get("n_fit"), "n_calibration": fit_report.get("n_calibration"),
        "n_holdout_good": evaluation.get("n_good"),
        "n_holdout_defect": evaluation.get("n_defect"),
        "fit_seconds": fit_report.get("fit_seconds"),
        "evaluation": evaluation,
    }
    detector.metadata.metrics = metrics
    detector.metadata.training_data.update(dataset=params["dataset_id"], job=str(job_id))
    progress(0.9, "saving the version")
    with tempfile.TemporaryDirectory() as tmp:
        save(detector, Path(tmp))
        versions.publish(engine, store, Path(tmp), name=params["name"],
                         version=detector.version, kind=params["detector"], metrics=metrics,
                         dataset_id=uuid.UUID(params["dataset_id"]), job_id=job_id,
                         created_by=params.get("created_by"))
    return metrics, detector.version


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = argv if argv is not None else sys.argv[1:]
    lower_priority()
    run_job(Settings(), uuid.UUID(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
