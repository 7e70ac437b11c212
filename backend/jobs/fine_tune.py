"""``retrain_from_reviews`` for the supervised detectors (classifier, segmenter): the active
version fine-tunes on the reviewed inspections (a person's labels; for the segmenter, only
answers that carry their mask, and confirmed-good photos as empty masks), and the candidate is
compared with the active version on the held-out share of reviewed inspections before anyone
activates it.

A review's one mask stands for each of its labels the segmenter knows; labels the detector does
not know are left out (a defect with none left is skipped).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from sqlmodel import Session

from kensa.backend.services.reviews import reviewed_inspections
from kensa.backend.services.storage import BlobStore

MIN_SAMPLES = 6  # reviewed photos to fine-tune on (a validation part is held out of them)
DEFAULT_EPOCHS = 3
LR_FACTOR = 0.3  # fine-tuning steps are smaller than the first training's


def _image(store: BlobStore, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.read(key))).convert("RGB"))


def reviewed_samples(engine, store: BlobStore, name: str, labels: list[str], segment: bool,
                     held_out) -> tuple[list, list[tuple[np.ndarray, str]]]:
    """``(train samples, held-out (image, human decision))`` from the current reviews."""
    from kensa.models.data.samples import Sample
    from kensa.models.evidence import decode_mask

    with Session(engine) as session:
        rows = [(i.id, i.image_key, r.decision, list(r.labels or []), r.mask_key)
                for i, r in reviewed_inspections(session, name)]
    train, holdout = [], []
    for inspection_id, key, decision, said, mask_key in rows:
        if held_out(inspection_id):
            holdout.append((_image(store, key), decision))
            continue
        known = tuple(sorted(label for label in said if label in labels))
        if decision == "defect" and not known:
            continue
        if segment and decision == "defect" and mask_key is None:
            continue
        image = _image(store, key)
        masks = None
        if segment:
            mask = (decode_mask(store.read(mask_key)) if mask_key
                    else np.zeros(image.shape[:2], bool))
            masks = {label: mask for label in known}
        train.append(Sample(labels=known if decision == "defect" else (), image=image,
                            masks_inline=masks, group=f"review:{inspection_id}",
                            meta={"name": str(inspection_id), "reviewed": True}))
    return train, holdout


def fine_tune(candidate, train: list, params: dict[str, Any], progress) -> dict[str, Any]:
    """Continue training ``candidate`` (loaded from the active version) on ``train``."""
    if len(train) < MIN_SAMPLES:
        raise ValueError(f"{len(train)} reviewed photos usable to fine-tune {candidate.name} "
                         f"(at least {MIN_SAMPLES}: answers with known labels"
                         f"{' and a mask' if candidate.spec.task.value == 'segment' else ''}, "
                         "outside the held-out share); review more inspections first")
    if not any(s.labels for s in train) or all(s.labels for s in train):
        raise ValueError("fine-tuning needs both confirmed-good and defect answers")
    epochs = int(params.get("epochs", DEFAULT_EPOCHS))
    candidate.config.epochs = epochs
    candidate.config.patience = max(1, epochs)
    candidate.config.lr = candidate.config.lr * LR_FACTOR
    progress(0.2, f"fine-tuning on {len(train)} reviewed photos ({epochs} epochs)")
    report = candidate.fit(train, progress=False, on_epoch=lambda n: progress(
        0.2 + 0.5 * n / max(1, epochs), f"epoch {n}/{epochs}"))
    keep = ("best_epoch", "best_score", "epochs_run", "n_train", "n_val", "thresholds",
            "monitor")
    return {k: report[k] for k in keep if k in report}
