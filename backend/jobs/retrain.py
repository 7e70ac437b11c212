"""The ``retrain_from_reviews`` job: the active version of a good-only detector learns the
photos people confirmed good, incrementally (``AnomalyDetector.update``: no full refit); a
classifier or segmenter fine-tunes on the reviewed labels (``fine_tune``). Either way the
candidate is compared with the active version on a held-out share of the reviewed
inspections before anyone activates it (figures in the version's metrics).

Held out: an inspection whose id hashes below ``holdout_share`` (stable across retrains, so
held-out inspections are never learnt). Of the rest, confirmed-good photos not learnt by an
earlier version are added; with at least ``MIN_RECALIBRATION`` of them, every fifth is kept
apart to recalibrate the threshold, otherwise the threshold stays.
"""

from __future__ import annotations

import io
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
from sqlmodel import Session

from kensa.backend.config import Settings
from kensa.backend.records import Job
from kensa.backend.services import versions
from kensa.backend.services.inference import artifact_dirs
from kensa.backend.services.reviews import reviewed_inspections
from kensa.backend.services.storage import make_store

KIND = "retrain_from_reviews"
MIN_RECALIBRATION = 10
LEARNT = "reviewed_inspections"  # training_data key: inspections a version has learnt


def held_out(inspection_id: uuid.UUID, share: float) -> bool:
    return int(inspection_id.hex[:8], 16) / 2**32 < share


def base_directory(settings: Settings, engine, store, name: str) -> Path:
    """The artifact the service serves as ``name``: its active version, else the folder."""
    with Session(engine) as session:
        row = versions.active(session, name)
    if row is not None:
        return versions.materialize(store, row, settings.data_dir / "versions")
    for directory in [*artifact_dirs(settings.model_dir), *settings.extra_models]:
        config = json.loads((Path(directory) / "config.json").read_text())
        if config.get("metadata", {}).get("name") == name:
            return Path(directory)
    raise LookupError(f"no detector {name!r} to retrain")


def compare(detectors: dict[str, Any], images: list[np.ndarray], human: list[str]
            ) -> dict[str, Any]:
    """Each detector's verdicts against the human decisions on the held-out photos."""
    out: dict[str, Any] = {"n": len(images), "human_defect": human.count("defect")}
    for role, detector in detectors.items():
        detections = detector.predict_batch(images) if images else []
        verdicts = [d.verdict.value for d in detections]
        # anomaly detectors: their score; supervised ones: their strongest finding
        scores = [float(d.anomaly_score) if d.anomaly_score is not None
                  else max((f.score for f in d.findings), default=0.0) for d in detections]
        ok = [v for v, h in zip(verdicts, human, strict=True) if h == "ok"]
        bad = [v for v, h in zip(verdicts, human, strict=True) if h == "defect"]
        figures = {
            "agreement": (sum(v == h for v, h in zip(verdicts, human, strict=True))
                          / len(human) if human else None),
            "false_alarm_rate": ok.count("defect") / len(ok) if ok else None,
            "miss_rate": bad.count("ok") / len(bad) if bad else None,
            "image_auroc": (float(roc_auc_score([h == "defect" for h in human], scores))
                            if ok and bad else None)}
        out[role] = figures
    return out


def run(settings: Settings, engine, job_id: uuid.UUID, progress) -> tuple[dict, str]:
    from kensa.models.artifacts import load_detector

    store = make_store(settings)
    with Session(engine) as session:
        params = dict(session.get(Job, job_id).params)
    name = params["name"]
    share = float(params.get("holdout_share", settings.review_holdout_share))
    directory = base_directory(settings, engine, store, name)
    candidate, active = load_detector(directory), load_detector(directory)
    if candidate.spec.learns_from.value == "labelled":
        return _supervised(settings, engine, store, job_id, params, share, candidate, active,
                           progress)
    learnt = set(candidate.metadata.training_data.get(LEARNT, []))
    with Session(engine) as session:
        reviewed = [(i.id, i.image_key, r.decision)
                    for i, r in reviewed_inspections(session, name)]

    def image(key: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(store.read(key))).convert("RGB"))

    holdout = [(i, key, d) for i, key, d in reviewed if held_out(i, share)]
    new_good = [(i, key) for i, key, d in reviewed
                if d == "ok" and not held_out(i, share) and str(i) not in learnt]
    if not new_good:
        raise ValueError(f"no newly confirmed good photos for {name} (outside the held-out "
                         f"share {share:g}); review more inspections first")
    progress(0.1, f"reading {len(new_good)} confirmed good photos")
    calibration = new_good[::5] if len(new_good) >= MIN_RECALIBRATION else []
    update = [item for item in new_good if item not in calibration]
    report = candidate.update([image(k) for _, k in update],
                              calibration=[image(k) for _, k in calibration])
    progress(0.6, f"comparing with the active version on {len(holdout)} held-out reviews")
    comparison = compare({"candidate": candidate, "active": active},
                         [image(k) for _, k, _ in holdout], [d for *_, d in holdout])
    candidate.metadata.training_data[LEARNT] = sorted(learnt | {str(i) for i, _ in update})
    candidate.metadata.training_data.update(job=str(job_id), parent=active.version)
    metrics = {
        "kind": KIND, "parent": active.version, "n_update": len(update),
        "n_calibration": len(calibration), "holdout_share": share,
        "threshold": candidate.post.threshold,
        "threshold_method": candidate.post.threshold_method,
        "parent_threshold": active.post.threshold, "update": report,
        "held_out_reviews": comparison,
    }
    candidate.metadata.metrics = {**candidate.metadata.metrics, "reviews": metrics}
    progress(0.9, "saving the version")
    return _publish(engine, store, job_id, params, candidate, active, metrics)


def _supervised(settings: Settings, engine, store, job_id: uuid.UUID, params: dict,
                share: float, candidate, active, progress) -> tuple[dict, str]:
    """Fine-tune a classifier or segmenter on the reviewed labels; compare; publish."""
    from kensa.backend.jobs.fine_tune import fine_tune, reviewed_samples

    name = params["name"]
    train, holdout = reviewed_samples(
        engine, store, name, list(candidate.labels), candidate.spec.task.value == "segment",
        lambda i: held_out(i, share))
    report = fine_tune(candidate, train, params, progress)
    progress(0.75, f"comparing with the active version on {len(holdout)} held-out reviews")
    comparison = compare({"candidate": candidate, "active": active},
                         [image for image, _ in holdout], [d for _, d in holdout])
    candidate.metadata.training_data.update(job=str(job_id), parent=active.version,
                                            reviewed_samples=len(train))
    metrics = {"kind": KIND, "method": "fine-tune", "parent": active.version,
               "n_train": len(train), "holdout_share": share, "fine_tune": report,
               "held_out_reviews": comparison}
    candidate.metadata.metrics = {**candidate.metadata.metrics, "reviews": metrics}
    progress(0.9, "saving the version")
    return _publish(engine, store, job_id, params, candidate, active, metrics)


def _publish(engine, store, job_id: uuid.UUID, params: dict, candidate, active,
             metrics: dict) -> tuple[dict, str]:
    from kensa.models.artifacts import save

    with tempfile.TemporaryDirectory() as tmp:
        save(candidate, Path(tmp))
        versions.publish(engine, store, Path(tmp), name=params["name"],
                         version=candidate.version, kind=candidate.kind, metrics=metrics,
                         dataset_id=None, job_id=job_id, created_by=params.get("created_by"),
                         parent=active.version)
    return metrics, candidate.version
