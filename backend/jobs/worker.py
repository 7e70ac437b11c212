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
from kensa.contract.schemas import JOB_FINAL
from kensa.models.data.samples import Sample

log = logging.getLogger(__name__)
HOLDOUT_FRACTION = 0.2
MIN_GOOD = 4
MIN_DEFECT = 2


def trainable(spec) -> bool:
    """Whether a train job can fit a detector kind from a dataset: good-only kinds from good
    images, classifiers from labelled images, segmenters from labelled images with masks."""
    return spec.learns_from.value == "good-only" or spec.task.value in ("classify", "segment")


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


def split_labelled(samples: list[Sample], seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(fit, held-out) for a classifier/segmenter: a fraction of every label (good included)
    held out, at least one image of each label with two or more."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for label in sorted({s.labels for s in samples}):
        group = [s for s in samples if s.labels == label]
        order = rng.permutation(len(group))
        n_hold = max(1, round(len(group) * HOLDOUT_FRACTION)) if len(group) > 1 else 0
        held += [group[i] for i in order[:n_hold]]
        fit += [group[i] for i in order[n_hold:]]
    return fit, held


def run_job(settings: Settings, job_id: uuid.UUID) -> None:
    engine = make_engine(settings.database_url)
    try:
        _run(settings, engine, job_id)
    finally:
        engine.dispose()


def _run(settings: Settings, engine, job_id: uuid.UUID) -> None:
    heartbeat = state.Heartbeat(engine, job_id, settings.job_heartbeat_s)

    def progress(value: float, message: str) -> None:
        job = state.read(engine, job_id)
        if (job is None or job.cancel_requested or job.status in JOB_FINAL
                or heartbeat.stopped.is_set()):
            raise Cancelled()  # cancelled, or failed as lost meanwhile
        state.write(engine, job_id, progress=round(value, 3), message=message)

    worker = f"{os.getpid()}@{socket.gethostname()}"
    if not state.write(engine, job_id, status="running", started_at=state.now(),
                       heartbeat_at=state.now(), worker=worker, message="starting"):
        return  # already final (cancelled before it started)
    try:
        with heartbeat:
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
    from kensa.models.registry import get_spec

    store = make_store(settings)
    with Session(engine) as session:
        job = session.get(Job, job_id)
        params = dict(job.params)
        rows = datasets.images(session, uuid.UUID(params["dataset_id"]))
    spec = get_spec(params["detector"])
    samples = []
    for i, row in enumerate(rows):
        image = np.asarray(Image.open(io.BytesIO(store.read(row.image_key))).convert("RGB"))
        labels = () if row.label == datasets.GOOD else (row.label,)
        masks = None
        if row.mask_key and labels:
            mask = np.asarray(Image.open(io.BytesIO(store.read(row.mask_key))).convert("L"))
            masks = {row.label: mask > 0}
        elif spec.task.value == "segment":
            masks = {}  # a good image, or a defect without a mask: nothing marked
        samples.append(Sample(labels=labels, image=image, masks_inline=masks,
                              meta={"name": str(row.id)}))
        if i % 5 == 0:
            progress(0.25 * (i + 1) / len(rows), f"reading images {i + 1}/{len(rows)}")
    config = {**(spec.quick if params.get("quick") else {}), **params.get("config", {})}
    if spec.learns_from.value != "good-only":
        detector, metrics = _fit_labelled(params, config, samples, progress)
    else:
        detector, metrics = _fit_good_only(params, config, samples, progress)
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


def _fit_labelled(params: dict, config: dict, samples: list[Sample], progress):
    """A classifier or segmenter on the dataset's labels (and masks), held-out metrics."""
    from kensa.models.registry import create_detector
    from kensa.models.training.eval_supervised import evaluate_supervised
    from kensa.models.training.supervised import default_input_size

    fit_part, held = split_labelled(samples)
    labels = sorted({lab for s in samples for lab in s.labels})
    config.setdefault("labels", labels)
    config.setdefault("input_size", default_input_size(fit_part[0].load_image().shape[:2]))
    detector = create_detector(params["detector"], name=params["name"], **config)
    epochs = detector.config.epochs

    def on_epoch(epoch: int) -> None:
        progress(0.3 + 0.45 * min(epoch, epochs) / epochs, f"epoch {epoch}/{epochs}")

    progress(0.3, f"training {params['detector']} on {len(fit_part)} images "
                  f"({', '.join(labels)})")
    fit_report = detector.fit(fit_part, held or None, on_epoch=on_epoch, progress=False)
    progress(0.75, f"evaluating on {len(held)} held-out images")
    evaluation = evaluate_supervised(detector, held or fit_part, progress=False)
    headline = {k: evaluation[k] for k in ("roc_auc", "macro_f1", "accuracy", "dice", "iou")
                if isinstance(evaluation.get(k), float)}
    return detector, {**headline, "labels": labels, "n_fit": len(fit_part),
                      "n_holdout": len(held), "fit_seconds": fit_report.get("seconds"),
                      "epochs_run": fit_report.get("epochs_run"), "evaluation": evaluation}


def _fit_good_only(params: dict, config: dict, samples: list[Sample], progress):
    from kensa.models.registry import create_detector
    from kensa.models.training.anomaly import auto_input_size
    from kensa.models.training.eval_anomaly import evaluate_anomaly

    fit_part, held = split_holdout(samples)
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
    return detector, metrics


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = argv if argv is not None else sys.argv[1:]
    lower_priority()
    run_job(Settings(), uuid.UUID(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
