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
class Detection:
    """What one detector says about one image.

    ``anomaly_map`` holds raw per-pixel scores at the original image size; ``map_range``
    is the detector's fixed, calibrated display range (``low`` = typical good pixel,
    ``high`` = pixel threshold), so overlays never use per-image min-max scaling.
    ``heatmaps`` holds Grad-CAM evidence per predicted label, in [0, 1].
    """

    detector: str
    version: str
    task: Task
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    anomaly_score: float | None = None
    threshold: float | None = None
    anomaly_map: np.ndarray | None = None
    map_range: tuple[float, float] | None = None
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    threshold_method: str | None = None  # how ``threshold`` was set (calibration, manual)

    @property
    def normalized_score(self) -> float | None:
        """Anomaly score relative to the threshold: 1.0 is exactly at the threshold."""
        if self.anomaly_score is None or not self.threshold:
            return None
        return self.anomaly_score / self.threshold

    @property
    def labels(self) -> list[str]:
        return sorted({f.label for f in self.findings})
