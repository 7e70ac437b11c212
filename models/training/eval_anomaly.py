"""Held-out metrics of a good-only anomaly detector, at the threshold saved with it.

``evaluate_anomaly(detector, samples, robust=False, plots=None)`` scores every sample once
(maps at the detector's input size; ground-truth masks are resized to it by area, a pixel
counts as defect when at least half of it is), and reports image AUROC, pixel AUROC (when the
defective samples have masks), precision/recall/F1 of the saved threshold, and with ``robust``
the same on seed 001's six rotated/shifted/scaled copies of every image
(``models.data.robust``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score, roc_curve
from tqdm.auto import tqdm

from kensa.models.data.robust import describe_protocol, pose_copies
from kensa.models.data.samples import Sample
from kensa.models.detectors.anomaly import AnomalyDetector

log = logging.getLogger(__name__)

MAX_PIXELS = 6_000_000
"""Pixel AUROC on at most this many pixels (a fixed random subset; defect pixels all kept)."""


def split_name(samples: Sequence[Sample]) -> str:
    """How the evaluated samples were chosen, e.g. ``test`` or ``val+train-defective``."""
    splits = {s.split or "unsplit" for s in samples}
    if len(splits) == 1:
        return splits.pop()
    train = [s for s in samples if s.split == "train"]
    if train and all(not s.is_good for s in train):
        rest = sorted(splits - {"train"})
        return "+".join([*rest, "train-defective"])
    return "+".join(sorted(splits))


def evaluation_samples(dataset: Any) -> tuple[list[Sample], str]:
    """Every sample the detector never fitted on. A layout's own ``test`` split is used as it
    is (MVTec); when there is none, or it was carved out of ``train`` by the loader
    (KolektorSDD's yolo layout has only train/val), every image but the good training ones:
    ``val`` (+ carved ``test``) + the defective images of ``train``."""
    test = list(dataset.split("test"))
    carved = "carved" in str(getattr(dataset, "split_source", ""))
    if test and not carved:
        return test, "test"
    chosen = [s for s in dataset.samples if not (s.split == "train" and s.is_good)]
    return chosen, split_name(chosen)


def _truth_mask(sample: Sample, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    union = sample.union_mask(h, w).astype(np.float32)
    return cv2.resize(union, (size[1], size[0]), interpolation=cv2.INTER_AREA) >= 0.5


def _metrics(scores: np.ndarray, labels: np.ndarray, maps: list[np.ndarray],
             masks: list[np.ndarray | None], threshold: float, seed: int = 0
             ) -> dict[str, Any]:
    predicted = scores >= threshold
    out: dict[str, Any] = {
        "n_good": int((labels == 0).sum()), "n_defect": int((labels == 1).sum()),
        "image_auroc": (float(roc_auc_score(labels, scores))
                        if 0 < labels.sum() < len(labels) else None),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "false_positive_rate": float(predicted[labels == 0].mean()) if (labels == 0).any()
        else None,
        "pixel_auroc": None,
    }
    with_masks = [(m, t) for m, t, y in zip(maps, masks, labels, strict=True)
                  if t is not None and (y == 0 or t.any())]
    if any(t.any() for _, t in with_masks):
        pixel_scores = np.concatenate([m.ravel() for m, _ in with_masks])
        pixel_truth = np.concatenate([t.ravel() for _, t in with_masks])
        if pixel_scores.size > MAX_PIXELS:  # keep every defect pixel, subsample the rest
            rng = np.random.default_rng(seed)
            keep = pixel_truth | (rng.random(pixel_truth.size) <
                                  (MAX_PIXELS - pixel_truth.sum()) / pixel_truth.size)
            pixel_scores, pixel_truth = pixel_scores[keep], pixel_truth[keep]
        out["pixel_auroc"] = float(roc_auc_score(pixel_truth, pixel_scores))
        out["n_pixels"] = int(pixel_truth.size)
    return out


def _score_all(detector: AnomalyDetector, images: list[np.ndarray], desc: str
               ) -> tuple[np.ndarray, list[np.ndarray], float]:
    scores, maps = [], []
    started = time.perf_counter()
    for start in tqdm(range(0, len(images), 8), desc=desc, unit="batch"):
        s, m = detector.raw_scores(images[start:start + 8])
        scores.append(s)
        maps.extend(m)
    per_image_ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
    return np.concatenate(scores), maps, per_image_ms


def _plots(directory: Path, scores: np.ndarray, labels: np.ndarray, threshold: float,
           title: str, suffix: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if 0 < labels.sum() < len(labels):
        fpr, tpr, _ = roc_curve(labels, scores)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(fpr, tpr, label=f"AUROC {roc_auc_score(labels, scores):.3f}")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate",
               title=f"ROC {title}")
        ax.legend(loc="lower right")
        path = directory / f"roc{suffix}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(str(path))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(scores.min(), scores.max(), 40)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"good ({(labels == 0).sum()})")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"defect ({labels.sum()})")
    ax.axvline(threshold, c="k", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="raw anomaly score", ylabel="images", title=f"scores {title}")
    ax.legend()
    path = directory / f"scores{suffix}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(str(path))
    return written


def evaluate_anomaly(detector: AnomalyDetector, samples: Sequence[Sample], robust: bool = False,
                     plots: str | Path | None = None, split: str | None = None
                     ) -> dict[str, Any]:
    """Image/pixel AUROC and threshold metrics of ``detector`` on ``samples`` (see module doc).
    ``split`` names the samples in the report (default: derived from their ``split`` fields)."""
    if not samples:
        raise ValueError("no samples to evaluate")
    threshold = detector.post.threshold
    if threshold is None:
        raise RuntimeError(f"{detector.name} has no saved threshold; fit it first")
    size = tuple(detector.config.input_size)
    images = [s.load_image() for s in samples]
    labels = np.array([0 if s.is_good else 1 for s in samples])
    masks: list[np.ndarray | None] = [
        _truth_mask(s, im, size) if (s.is_good or s.has_masks) else None  # type: ignore[arg-type]
        for s, im in zip(samples, images, strict=True)
    ]
    scores, maps, latency = _score_all(detector, images, "scoring")
    report = _metrics(scores, labels, maps, masks, threshold)
    report.update(split=split or split_name(samples), threshold=threshold,
                  latency_ms_per_image=round(latency, 2), detector=detector.name,
                  kind=detector.kind, version=detector.version, input_size=list(size))
    written = _plots(Path(plots), scores, labels, threshold, report["split"]) if plots else []
    if robust:
        r_images, r_labels, r_masks = [], [], []
        for sample, image, label in zip(samples, images, labels, strict=True):
            h, w = image.shape[:2]
            full_mask = sample.union_mask(h, w) if sample.has_masks else None
            for _name, changed, changed_mask in pose_copies(image, full_mask):
                r_images.append(changed)
                r_labels.append(label)
                if changed_mask is None:
                    r_masks.append(np.zeros(size, bool) if label == 0 else None)
                else:
                    small = cv2.resize(changed_mask.astype(np.float32), (size[1], size[0]),
                                       interpolation=cv2.INTER_AREA) >= 0.5
                    r_masks.append(small)
        r_scores, r_maps, _ = _score_all(detector, r_images, "scoring pose copies")
        r_labels_arr = np.array(r_labels)
        report["robust"] = {**_metrics(r_scores, r_labels_arr, r_maps, r_masks, threshold),
                            "protocol": describe_protocol()}
        if plots:
            written += _plots(Path(plots), r_scores, r_labels_arr, threshold,
                              f"{report['split']} (pose copies)", suffix="_robust")
    if written:
        report["plots"] = written
    return report
