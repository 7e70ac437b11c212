"""The Severstal winners' recipe as options of the steel pipeline (classifier + segmenter).

- **Gate**: a classifier in front of the segmenter; a photo no class passes skips
  segmentation, and only the classes that pass keep their masks.
- **Tuned post-processing**: per class a gate probability threshold (``tune_gate``) beside
  the segmenter's own pixel threshold, minimum component and minimum area
  (``DefectSegmenter.tune_postprocess``), all tuned on validation for Kaggle dice and saved in
  the segmenter artifact (``post.gate``, ``post.classes``).
- **Pseudo-labels kept on agreement**: unlabelled photos become training samples only where
  the classifier's labels equal the labels the segmenter draws masks for.
- **Flip test-time augmentation**: ``post.tta_flips`` on either model.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from kensa.models.data.samples import Sample
from kensa.models.detectors.classifier import DefectClassifier
from kensa.models.detectors.segmenter import DefectSegmenter
from kensa.models.imaging import resize_map
from kensa.models.types import Detection, Task, Verdict

GATE_GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class GatedSegmenter:
    """Classifier gate + segmenter. Gate thresholds come from ``segmenter.post.gate`` (tuned
    by ``tune_gate``), else the classifier's own thresholds."""

    classifier: DefectClassifier
    segmenter: DefectSegmenter

    def gate_threshold(self, label: str) -> float:
        gate = self.segmenter.post.gate
        return gate[label] if label in gate else self.classifier.threshold_for(label)

    def passed(self, probs: np.ndarray) -> set[str]:
        """Labels of the segmenter whose classifier probability reaches the gate."""
        by_label = dict(zip(self.classifier.labels, probs, strict=True))
        return {lab for lab in self.segmenter.labels
                if float(by_label.get(lab, 1.0)) >= self.gate_threshold(lab)}

    def predict(self, image: np.ndarray) -> Detection:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detection]:
        t0 = time.perf_counter()
        probs = self.classifier.probabilities(list(images))
        gate_ms = (time.perf_counter() - t0) * 1000 / max(1, len(images))
        passed = [self.passed(p) for p in probs]
        to_segment = [i for i, p in enumerate(passed) if p]
        segmented = dict(zip(to_segment, self.segmenter.predict_batch(
            [images[i] for i in to_segment]), strict=True)) if to_segment else {}
        out = []
        for i, labels in enumerate(passed):
            if i not in segmented:
                out.append(Detection(detector=self.segmenter.name, version=self.segmenter.version,
                                     task=Task.SEGMENT, verdict=Verdict.OK,
                                     timings_ms={"gate": gate_ms, "segmentation_skipped": 1.0}))
                continue
            det = segmented[i]
            det.findings = [f for f in det.findings if f.label in labels]
            det.verdict = Verdict.DEFECT if det.findings and det.verdict == Verdict.DEFECT \
                else (Verdict.REVIEW if det.findings else Verdict.OK)
            det.timings_ms = {"gate": gate_ms, **det.timings_ms}
            out.append(det)
        return out


def tune_gate(classifier: DefectClassifier, segmenter: DefectSegmenter,
              val: Sequence[Sample]) -> dict[str, float]:
    """Per class, the gate threshold with the best validation Kaggle dice of the gated
    pipeline (a gated class scores 1 on an image without it, 0 on one with it), stored in
    ``segmenter.post.gate`` so it is saved with the segmenter artifact."""
    images = [s.load_image() for s in val]
    probs = classifier.probabilities(images)
    maps = segmenter.probability_maps(images)
    col = {lab: classifier.labels.index(lab) for lab in segmenter.labels
           if lab in classifier.labels}
    kept = {lab: [] for lab in col}
    truth_any = {lab: [] for lab in col}
    for sample, image, prob in zip(val, images, maps, strict=True):
        size = image.shape[:2]
        truth = sample.load_masks(*size)
        for c, label in enumerate(segmenter.labels):
            if label not in col:
                continue
            pred = segmenter.masks_from_probs(np.clip(resize_map(prob[c], size), 0, 1), label)
            gt = truth.get(label, np.zeros(size, bool))
            total = pred.sum() + gt.sum()
            kept[label].append(1.0 if total == 0 else 2 * (pred & gt).sum() / total)
            truth_any[label].append(bool(gt.any()))
    gate: dict[str, float] = {}
    for label, c in col.items():
        dice_kept = np.array(kept[label])
        dice_gated = np.where(np.array(truth_any[label]), 0.0, 1.0)
        scores = [(float(np.where(probs[:, c] >= t, dice_kept, dice_gated).mean()), -t)
                  for t in GATE_GRID]
        gate[label] = -max(scores)[1]
    segmenter.post.gate = gate
    return gate


def agreed_labels(said: Iterable[str], drawn: Iterable[str]) -> tuple[str, ...] | None:
    """The pseudo-label of a photo: the labels when the classifier's labels (``said``) equal
    the labels the segmenter draws masks for (``drawn``), ``()`` for an agreed good photo,
    None where they disagree (the photo is dropped)."""
    said, drawn = set(said), set(drawn)
    return tuple(sorted(drawn)) if said == drawn else None


def agreement_pseudo_labels(classifier: DefectClassifier, segmenter: DefectSegmenter,
                            images: Sequence[np.ndarray], names: Sequence[str] | None = None
                            ) -> tuple[list[Sample], int]:
    """Pseudo-labelled samples for the photos where the two models agree on the set of labels
    (an agreed good photo is kept too, with no masks); returns ``(kept, dropped)``."""
    probs = classifier.probabilities(list(images))
    maps = segmenter.probability_maps(list(images))
    kept, dropped = [], 0
    for k, (image, p, prob) in enumerate(zip(images, probs, maps, strict=True)):
        said = {lab for lab, v in zip(classifier.labels, p, strict=True)
                if v >= classifier.threshold_for(lab) and lab in segmenter.labels}
        size = image.shape[:2]
        # confident masks only: the tuned threshold itself, not the review band below it
        masks = {lab: segmenter.masks_from_probs(np.clip(resize_map(prob[c], size), 0, 1), lab)
                 for c, lab in enumerate(segmenter.labels)}
        masks = {lab: m for lab, m in masks.items() if m.any()}
        labels = agreed_labels(said, masks)
        if labels is None:
            dropped += 1
            continue
        name = names[k] if names else f"pseudo_{k:05d}"
        kept.append(Sample(labels=labels, image=image, masks_inline=masks,
                           split="train", group=f"pseudo:{name}",
                           meta={"name": name, "pseudo_label": True}))
    return kept, dropped
