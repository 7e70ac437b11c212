"""Eager vs exported: the same images through both detectors, compared at every stage.

Tolerances (``TOLERANCES``): image scores / probabilities within a relative 1e-3 of the eager
value (probabilities: absolute 1e-3), maps within 1e-2 of the map's scale (anomaly: the
calibrated display range ``pixel_threshold - map_low``; probabilities and Grad-CAM: 1),
identical verdicts and labels, and every label's finding mask with IoU >= 0.99.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from kensa.models.base import Detector
from kensa.models.imaging import to_tensor
from kensa.models.types import Detection, Task

TOLERANCES = {"score_rel": 1e-3, "probability_abs": 1e-3, "map_rel_scale": 1e-2,
              "mask_iou": 0.99}


def parity_images(n_good: int = 2, n_defective: int = 3, size: tuple[int, int] = (256, 1600),
                  seed: int = 4242, extra: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Synthetic steel strips (good and defective) plus any real images given."""
    from kensa.models.data.synthetic import SteelStripGenerator

    samples = SteelStripGenerator(size=size, seed=seed).samples(n_good, n_defective)
    return [s.load_image() for s in samples] + list(extra)


def _masks(detection: Detection, size: tuple[int, int]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for finding in detection.findings:
        if finding.mask is not None:
            out.setdefault(finding.label, np.zeros(size, bool))
            out[finding.label] |= finding.mask
    return out


def _iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _raw(detector: Detector, images: list[np.ndarray]) -> dict[str, Any]:
    """The tensor stage's outputs: scores and maps before any decision."""
    if detector.task == Task.ANOMALY:
        scores, maps = detector.raw_scores(images)  # type: ignore[attr-defined]
        return {"scores": np.asarray(scores), "maps": np.stack(maps)}
    if detector.task == Task.CLASSIFY:
        from kensa.models.detectors.gradcam import grad_cam

        probs = detector.probabilities(images)  # type: ignore[attr-defined]
        x = to_tensor(images, tuple(detector.config.input_size))
        every = [list(range(len(detector.labels)))] * len(images)
        with torch.no_grad():
            features = detector.model.forward_features(x)
        cams = grad_cam(detector.model, x, every, features)
        return {"probabilities": probs,
                "gradcam": np.stack([np.stack([c[k] for k in sorted(c)]) for c in cams])}
    maps = detector.probability_maps(images)  # type: ignore[attr-defined]
    return {"probabilities": np.stack(maps)}


def compare(eager: Detector, exported: Detector, images: list[np.ndarray]) -> dict[str, Any]:
    """Parity report; ``passed`` is False when any tolerance is exceeded."""
    with torch.inference_mode(False):
        a, b = _raw(eager, images), _raw(exported, images)
    measured: dict[str, float] = {}
    failures: list[str] = []

    def check(key: str, value: float, limit: float, larger_is_worse: bool = True) -> None:
        measured[key] = float(value)
        bad = value > limit if larger_is_worse else value < limit
        if bad or not np.isfinite(value):
            failures.append(f"{key} {value:.3g} (limit {limit:g})")

    if eager.task == Task.ANOMALY:
        rel = np.abs(a["scores"] - b["scores"]) / np.maximum(np.abs(a["scores"]), 1e-12)
        check("score_rel_max", float(rel.max()), TOLERANCES["score_rel"])
        post = eager.post  # type: ignore[attr-defined]
        scale = (post.pixel_threshold - post.map_low if post.pixel_threshold is not None
                 else float(np.abs(a["maps"]).max()))
        diff = float(np.abs(a["maps"] - b["maps"]).max())
        measured["map_scale"] = float(scale)
        check("map_abs_max_over_scale", diff / max(scale, 1e-12), TOLERANCES["map_rel_scale"])
    else:
        diff = float(np.abs(a["probabilities"] - b["probabilities"]).max())
        key = "probability_abs_max" if eager.task == Task.CLASSIFY else "map_abs_max_over_scale"
        limit = (TOLERANCES["probability_abs"] if eager.task == Task.CLASSIFY
                 else TOLERANCES["map_rel_scale"])
        check(key, diff, limit)
        if "gradcam" in a:
            check("gradcam_abs_max", float(np.abs(a["gradcam"] - b["gradcam"]).max()),
                  TOLERANCES["map_rel_scale"])
    da, db = eager.predict_batch(images), exported.predict_batch(images)
    verdicts = sum(x.verdict == y.verdict for x, y in zip(da, db, strict=True))
    labels = sum(x.labels == y.labels for x, y in zip(da, db, strict=True))
    if verdicts < len(images):
        failures.append(f"verdicts differ on {len(images) - verdicts} of {len(images)} images")
    if labels < len(images):
        failures.append(f"labels differ on {len(images) - labels} of {len(images)} images")
    ious = [1.0]
    for image, x, y in zip(images, da, db, strict=True):
        ma, mb = _masks(x, image.shape[:2]), _masks(y, image.shape[:2])
        ious.extend(_iou(ma.get(k), mb.get(k)) for k in set(ma) | set(mb))
    check("mask_iou_min", min(ious), TOLERANCES["mask_iou"], larger_is_worse=False)
    return {"passed": not failures, "failures": failures, "measured": measured,
            "tolerances": dict(TOLERANCES), "n_images": len(images),
            "verdicts_equal": int(verdicts), "labels_equal": int(labels),
            "verdicts": [d.verdict.value for d in da]}
