"""The result every detector returns, whatever its task."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Task(StrEnum):
    CLASSIFY = "classify"
    SEGMENT = "segment"
    ANOMALY = "anomaly"


class LearnsFrom(StrEnum):
    LABELLED = "labelled"
    GOOD_ONLY = "good-only"


class Verdict(StrEnum):
    OK = "ok"
    DEFECT = "defect"
    REVIEW = "review"

    @staticmethod
    def combine(verdicts: list[Verdict]) -> Verdict:
        """The worst of several verdicts: defect > review > ok (ok for none)."""
        if Verdict.DEFECT in verdicts:
            return Verdict.DEFECT
        if Verdict.REVIEW in verdicts:
            return Verdict.REVIEW
        return Verdict.OK


BBox = tuple[int, int, int, int]
"""Pixel box ``(x0, y0, x1, y1)`` in the original image, x1/y1 exclusive."""


@dataclass
class Finding:
    """One thing a detector found: a defect label with its evidence."""

    label: str
    score: float
    detector: str
    area_px: int = 0
    bbox: BBox | None = None
    mask: np.ndarray | None = None  # bool HxW at the original image size, or None


@dataclass
class EvidenceLayer:
    """One per-pixel evidence map of a detection.

    ``kind`` names how it is drawn (``kensa.models.evidence``: ``heatmap``, ``gradcam`` or any
    registered kind); ``label`` is what it is evidence for (or None); ``values`` is float32
    HxW (any size: renderers resize to the photo); ``scale`` is the fixed, calibrated
    ``(low, high)`` display range (``low`` = calm, ``high`` = full strength), so overlays
    never use per-image min-max scaling.
    """

    kind: str
    label: str | None
    values: np.ndarray
    scale: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim != 2:
            raise ValueError(f"an evidence layer is HxW, got shape {self.values.shape}")
        low, high = float(self.scale[0]), float(self.scale[1])
        if not high > low:
            raise ValueError(f"an evidence scale needs low < high, got {self.scale}")
        self.scale = (low, high)

    def normalized(self) -> np.ndarray:
        """Values on [0, 1] of the fixed scale: ``low`` -> 0, ``high`` -> 1 (clipped)."""
        low, high = self.scale
        return np.clip((self.values - low) / (high - low), 0.0, 1.0)


@dataclass
class Detection:
    """What one detector says about one image; ``evidence`` holds its per-pixel maps
    (finding masks stay on the findings)."""

    detector: str
    version: str
    task: Task
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    anomaly_score: float | None = None
    threshold: float | None = None
    evidence: list[EvidenceLayer] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    threshold_method: str | None = None  # how ``threshold`` was set (calibration, manual)
    runtime: str = "torch"  # what ran the model: torch, onnxruntime or openvino

    @property
    def normalized_score(self) -> float | None:
        """Anomaly score relative to the threshold: 1.0 is exactly at the threshold."""
        if self.anomaly_score is None or not self.threshold:
            return None
        return self.anomaly_score / self.threshold

    def layers(self, kind: str) -> list[EvidenceLayer]:
        """The evidence layers of one kind."""
        return [layer for layer in self.evidence if layer.kind == kind]

    def layer(self, kind: str, label: str | None = None) -> EvidenceLayer | None:
        """The first layer of ``kind`` (and ``label``, when given), or None."""
        for layer in self.layers(kind):
            if label is None or layer.label == label:
                return layer
        return None

    @property
    def labels(self) -> list[str]:
        return sorted({f.label for f in self.findings})
