"""Held-out metrics of the classifier and the segmenter, in one JSON-ready dict, plus plots.

Classification: exact-match accuracy (multi-label), argmax accuracy when every image has
exactly one label (seed 003's single-label figure), macro F1, per-class precision/recall/F1,
macro ROC-AUC and a confusion matrix (also as PNG).
Segmentation: dice as Kaggle Severstal scored it (mean over image x class pairs, both empty =
1), IoU the same way, per class, plus the dice over defective pairs only (the empty pairs of a
mostly-good set otherwise hide a weak model) and image-level defect detection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from tqdm.auto import tqdm

from kensa.models.base import Detector
from kensa.models.data.robust import POSE_CHANGES, describe_protocol
from kensa.models.data.samples import Sample
from kensa.models.imaging import resize_map
from kensa.models.types import Task

log = logging.getLogger(__name__)
NONE_LABEL = "(none)"
CHUNK = 16


def evaluate_supervised(detector: Detector, samples: Sequence[Sample], *, robust: bool = False,
                        plots: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Metrics of a classifier or segmenter on ``samples`` (labels outside the detector's
    label set are ignored, with a warning)."""
    if not samples:
        raise ValueError("no samples to evaluate")
    unknown = sorted({lab for s in samples for lab in s.labels} - set(detector.labels))
    if unknown:
        log.warning("labels %s are not known to %s and are ignored", unknown, detector.name)
    if plots is not None:
        plots = Path(plots)
        plots.mkdir(parents=True, exist_ok=True)
    if detector.task == Task.CLASSIFY:
        report = evaluate_classifier(detector, samples, plots=plots, progress=progress)
        if robust:
            report["robust"] = _robust(detector, samples, progress)
        return report
    if detector.task == Task.SEGMENT:
        report = evaluate_segmenter(detector, samples, plots=plots, progress=progress)
        if robust:
            report["robust"] = _robust(detector, samples, progress)
        return report
    raise ValueError(f"{detector.kind} is a {detector.task} detector, not classify/segment")


def _chunks(samples: Sequence[Sample], desc: str, progress: bool
            ) -> Iterator[tuple[list[Sample], list[np.ndarray]]]:
    with tqdm(total=len(samples), desc=desc, unit="img", disable=not progress,
              leave=False) as bar:
        for start in range(0, len(samples), CHUNK):
            chunk = list(samples[start:start + CHUNK])
            yield chunk, [s.load_image() for s in chunk]
            bar.update(len(chunk))


# -- classification ---------------------------------------------------------------------------
def classification_metrics(labels: Sequence[str], truth: np.ndarray, probs: np.ndarray,
                           pred: np.ndarray) -> dict[str, Any]:
    """Metrics from multi-hot ``truth``, probabilities and thresholded multi-hot ``pred``."""
    labels = list(labels)
    per_label_count = truth.sum(axis=1)
    report: dict[str, Any] = {
        "n_images": len(truth),
        "accuracy": float((pred == truth).all(axis=1).mean()),
        "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
    }
    single = per_label_count == 1
    if single.any():  # seed 003's figure: argmax over the images that carry one label
        report["single_label_accuracy"] = float(
            (probs[single].argmax(axis=1) == truth[single].argmax(axis=1)).mean())
        report["single_label_images"] = int(single.sum())
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, pred, average=None, zero_division=0)
    aucs = {}
    for c, label in enumerate(labels):
        if 0 < truth[:, c].sum() < len(truth):
            aucs[label] = float(roc_auc_score(truth[:, c], probs[:, c]))
    report["per_class"] = {
        label: {"precision": float(precision[c]), "recall": float(recall[c]),
                "f1": float(f1[c]), "support": int(support[c]),
                "roc_auc": aucs.get(label)}
        for c, label in enumerate(labels)}
    report["roc_auc"] = float(np.mean(list(aucs.values()))) if aucs else None
    if (per_label_count <= 1).all():
        # one label (or none) per image: a square matrix over labels + "(none)"
        names = [*labels, NONE_LABEL]
        true_idx = np.where(per_label_count == 1, truth.argmax(axis=1), len(labels))
        masked = np.where(pred.astype(bool), probs, -1.0)
        pred_idx = np.where(pred.any(axis=1), masked.argmax(axis=1), len(labels))
        used = sorted(set(true_idx.tolist()) | set(pred_idx.tolist()))
        matrix = confusion_matrix(true_idx, pred_idx, labels=used)
        report["confusion_matrix"] = {"labels": [names[i] for i in used],
                                      "matrix": matrix.tolist(),
                                      "rows": "true", "columns": "predicted"}
    else:
        matrices = multilabel_confusion_matrix(truth, pred)
        report["confusion_matrix"] = {
            "per_class": {label: matrices[c].tolist() for c, label in enumerate(labels)},
            "layout": "[[tn, fp], [fn, tp]]"}
    good = per_label_count == 0
    if good.any() and (~good).any():
        flagged = pred.any(axis=1)
        report["image_level"] = {
            "defect_recall": float(flagged[~good].mean()),
            "false_alarm_rate": float(flagged[good].mean()),
            "roc_auc": float(roc_auc_score(~good, probs.max(axis=1))),
        }
    return report


def evaluate_classifier(detector, samples: Sequence[Sample], *, plots: Path | None = None,
                        progress: bool = True) -> dict[str, Any]:
    labels = detector.labels
    truth = np.array([[lab in s.labels for lab in labels] for s in samples], dtype=np.int64)
    probs = np.concatenate([detector.probabilities(images)
                            for _, images in _chunks(samples, "classify", progress)])
    thresholds = np.array([detector.threshold_for(lab) for lab in labels])
    pred = (probs >= thresholds).astype(np.int64)
    report = classification_metrics(labels, truth, probs, pred)
    report["thresholds"] = {lab: float(t) for lab, t in zip(labels, thresholds, strict=True)}
    if plots is not None:
        report["plots"] = {"confusion_matrix": str(plot_confusion(report["confusion_matrix"],
                                                                  plots / "confusion_matrix.png",
                                                                  detector.name))}
    return report


def plot_confusion(cm: dict[str, Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "matrix" in cm:
        n = len(cm["labels"])
        fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 1.1 * n + 2))
        ConfusionMatrixDisplay(np.array(cm["matrix"]), display_labels=cm["labels"]).plot(
            ax=ax, colorbar=False, xticks_rotation=45, cmap="Blues")
        ax.set_title(title)
    else:
        per = cm["per_class"]
        fig, axes = plt.subplots(1, len(per), figsize=(3 * len(per), 3.2), squeeze=False)
        for ax, (label, matrix) in zip(axes[0], per.items(), strict=True):
            ConfusionMatrixDisplay(np.array(matrix), display_labels=["no", "yes"]).plot(
                ax=ax, colorbar=False, cmap="Blues")
            ax.set_title(label)
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- segmentation -----------------------------------------------------------------------------
def _pair_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of one image x class pair; both empty = 1."""
    inter = np.logical_and(pred, truth).sum()
    p, t = pred.sum(), truth.sum()
    if p + t == 0:
        return 1.0, 1.0
    return float(2 * inter / (p + t)), float(inter / (p + t - inter))


def evaluate_segmenter(detector, samples: Sequence[Sample], *, plots: Path | None = None,
                       progress: bool = True) -> dict[str, Any]:
    labels = detector.labels
    dice = np.zeros((len(samples), len(labels)))
    iou = np.zeros_like(dice)
    has_truth = np.zeros_like(dice, dtype=bool)
    has_pred = np.zeros_like(has_truth)
    max_prob = np.zeros_like(dice)
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []
    row = 0
    for chunk, images in _chunks(samples, "segment", progress):
        maps = detector.probability_maps(images)
        for sample, image, prob in zip(chunk, images, maps, strict=True):
            size = image.shape[:2]
            truth_masks = sample.load_masks(*size)
            pred_union = np.zeros(size, bool)
            for c, label in enumerate(labels):
                full = np.clip(resize_map(prob[c], size), 0, 1)
                pred = detector.masks_from_probs(full, label)
                truth = truth_masks.get(label, np.zeros(size, bool))
                dice[row, c], iou[row, c] = _pair_scores(pred, truth)
                has_truth[row, c], has_pred[row, c] = truth.any(), pred.any()
                max_prob[row, c] = float(full.max())
                pred_union |= pred
            if plots is not None and len(examples) < 6 and sample.labels:
                examples.append((image, sample.union_mask(*size), pred_union, sample.name))
            row += 1
    report: dict[str, Any] = {
        "n_images": len(samples),
        "dice": float(dice.mean()), "iou": float(iou.mean()),
        "dice_defective": float(dice[has_truth].mean()) if has_truth.any() else None,
        "per_class": {},
    }
    for c, label in enumerate(labels):
        positives = has_truth[:, c]
        report["per_class"][label] = {
            "dice": float(dice[:, c].mean()), "iou": float(iou[:, c].mean()),
            "dice_defective": float(dice[positives, c].mean()) if positives.any() else None,
            "support": int(positives.sum()),
            "image_precision": float(positives[has_pred[:, c]].mean())
            if has_pred[:, c].any() else None,
            "image_recall": float(has_pred[positives, c].mean()) if positives.any() else None,
        }
    any_truth, any_pred = has_truth.any(axis=1), has_pred.any(axis=1)
    report["image_level"] = {
        "accuracy": float((any_truth == any_pred).mean()),
        "defect_recall": float(any_pred[any_truth].mean()) if any_truth.any() else None,
        "false_alarm_rate": float(any_pred[~any_truth].mean()) if (~any_truth).any() else None,
        "roc_auc": float(roc_auc_score(any_truth, max_prob.max(axis=1)))
        if 0 < any_truth.sum() < len(any_truth) else None,
    }
    report["postprocess"] = {label: detector.class_post(label).model_dump() for label in labels}
    if plots is not None and examples:
        report["plots"] = {"examples": str(plot_examples(examples, plots / "examples.png"))}
    return report


def plot_examples(examples, path: Path) -> Path:
    """Image | ground truth | prediction for a few defective samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(examples)
    fig, axes = plt.subplots(rows, 3, figsize=(9, 2.4 * rows), squeeze=False)
    for ax_row, (image, truth, pred, name) in zip(axes, examples, strict=True):
        ax_row[0].imshow(image)
        ax_row[0].set_title(name, fontsize=8)
        ax_row[1].imshow(image)
        ax_row[1].imshow(np.ma.masked_where(~truth, truth), alpha=0.5, cmap="autumn")
        ax_row[1].set_title("ground truth", fontsize=8)
        ax_row[2].imshow(image)
        ax_row[2].imshow(np.ma.masked_where(~pred, pred), alpha=0.5, cmap="winter")
        ax_row[2].set_title("prediction", fontsize=8)
        for ax in ax_row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- robustness -------------------------------------------------------------------------------
def _robust(detector, samples: Sequence[Sample], progress: bool) -> dict[str, Any]:
    """The same metrics on seed 001's rotated/shifted/scaled copies of every sample."""

    posed: list[Sample] = []
    for sample in tqdm(samples, desc="pose copies", disable=not progress, leave=False):
        image = sample.load_image()
        masks = sample.load_masks(*image.shape[:2]) if detector.task == Task.SEGMENT else {}
        for change in POSE_CHANGES:
            moved_image, _ = change.apply(image)
            moved = {lab: change.apply(image, m)[1] for lab, m in masks.items()}
            posed.append(Sample(labels=sample.labels, image=moved_image,
                                      masks_inline=moved if masks else None,
                                      meta={"name": f"{sample.name}:{change.name}"}))
    if detector.task == Task.CLASSIFY:
        full = evaluate_classifier(detector, posed, progress=progress)
        keys = ("accuracy", "single_label_accuracy", "macro_f1", "roc_auc")
    else:
        full = evaluate_segmenter(detector, posed, progress=progress)
        keys = ("dice", "iou", "dice_defective")
    return {"protocol": describe_protocol(), "n_images": len(posed),
            **{k: full[k] for k in keys if k in full}}
