"""What every detector is: a plain ``nn.Module`` plus the pre/post-processing saved with it."""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from kensa.models.backbones import WeightsOrigin
from kensa.models.data.samples import Sample
from kensa.models.device import default_device
from kensa.models.types import Detection, LearnsFrom, Task

log = logging.getLogger(__name__)


class DetectorConfig(BaseModel):
    """Hyper-parameters fixed at creation; everything needed to rebuild the module."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="instance name in the service; default: the kind")
    labels: list[str] = Field(default_factory=list)
    input_size: tuple[int, int] = (256, 256)


class Postprocess(BaseModel):
    """Decision settings that may change at run time without retraining."""

    model_config = ConfigDict(extra="forbid")


class ArtifactMetadata(BaseModel):
    """Provenance saved beside the weights."""

    model_config = ConfigDict(extra="allow")

    kind: str
    name: str
    task: Task
    version: str = "unsaved"
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    weights: dict[str, str] = Field(default_factory=dict)
    training_data: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    demo: bool = False
    notes: str = ""


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector kind: what it does, what it learns from, how to build it."""

    kind: str
    task: Task
    learns_from: LearnsFrom
    cls: type[Detector]
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    """Config overrides for a fit in seconds (demo model, contract tests)."""

    def config(self, **overrides: Any):
        """The detector's validated config: class defaults < registered defaults < overrides."""
        return self.cls.Config(**{**self.defaults, **overrides})

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config().input_size)  # type: ignore[return-value]

    @property
    def labels(self) -> list[str]:
        return list(self.config().labels)


class Detector(ABC):
    """Base of every registered detector.

    Subclasses set ``Config``/``Post`` and implement ``build_model``, ``fit`` and ``predict``.
    ``self.model`` must hold every tensor the detector needs (parameters and buffers), so that
    ``models.artifacts`` can save and load it exactly.
    """

    Config: ClassVar[type[DetectorConfig]] = DetectorConfig
    Post: ClassVar[type[Postprocess]] = Postprocess
    runtime: str = "torch"
    """What runs the module: ``torch``, or ``onnxruntime``/``openvino`` for an exported graph."""

    def __init__(self, config: DetectorConfig, *, spec: DetectorSpec, weights: str = "auto",
                 device: str | None = None) -> None:
        self.kind = spec.kind
        self.spec = spec
        self.config = config
        self.post = self.Post()
        self.device = default_device(device)
        with torch.random.fork_rng(devices=[]):  # same config, same start: whatever ran before
            torch.manual_seed(getattr(config, "seed", 0))
            self.model, origin = self.build_model(weights)
        self.model.to(self.device).eval()
        self.metadata = ArtifactMetadata(
            kind=self.kind, name=config.name or self.kind, task=spec.task,
            weights=origin.as_dict()
        )

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        """The plain module and where its start weights came from (``weights="none"`` when
        rebuilding from an artifact: the saved tensors replace them)."""

    @abstractmethod
    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None,
            **options: Any) -> dict[str, Any]:
        """Learn from ``train`` (and tune thresholds on ``val``); returns a fit report."""

    @abstractmethod
    def predict(self, image: np.ndarray) -> Detection:
        """Inspect one HxWx3 uint8 RGB image."""

    # -- shared behaviour ----------------------------------------------------------------------
    def __call__(self, image: np.ndarray) -> Detection:
        detection = self.predict(image)
        detection.runtime = self.runtime
        return detection

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detection]:
        return [self.predict(image) for image in images]

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def task(self) -> Task:
        return self.spec.task

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def thresholds(self) -> dict[str, float]:
        """Current decision thresholds by key (``image`` for anomaly scores, else a label)."""
        return {}

    def set_threshold(self, value: float, label: str | None = None) -> None:
        raise NotImplementedError(f"{self.kind} has no adjustable threshold")

    def threshold_range(self) -> tuple[float, float]:
        """The open interval a decision threshold must lie in: where this detector's scores
        can sensibly be cut. Probabilities by default; anomaly detectors derive theirs from
        their calibration."""
        return (0.0, 1.0)

    def _described_range(self) -> list[float] | None:
        try:
            return list(self.threshold_range())
        except ValueError:
            return None

    def check_threshold(self, value: float) -> float:
        """``value`` as a float when it lies inside :meth:`threshold_range`, else ValueError
        (every ``set_threshold`` calls this before changing anything)."""
        low, high = self.threshold_range()
        if not (math.isfinite(value) and low < value < high):
            raise ValueError(f"threshold {value:g} is outside the range ({low:.4g}, {high:.4g}) "
                             f"that makes sense for {self.name} ({self.kind})")
        return float(value)

    def to(self, device: str) -> Detector:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        """The public summary the API lists."""
        thresholds = self.thresholds()
        threshold: float | dict[str, float] | None
        if not thresholds:
            threshold = None
        elif set(thresholds) == {"image"}:
            threshold = thresholds["image"]
        else:
            threshold = thresholds
        return {
            "name": self.name,
            "kind": self.kind,
            "task": self.task.value,
            "learns_from": self.spec.learns_from.value,
            "labels": self.labels,
            "version": self.version,
            "weights": self.metadata.weights,
            "threshold": threshold,
            "threshold_range": self._described_range() if thresholds else None,
            "input_size": list(self.config.input_size),
            "demo": self.metadata.demo,
            "metrics": self.metadata.metrics,
            "runtime": self.runtime,
        }
