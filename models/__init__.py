"""kensa's ML core: detectors, their registry, artifacts, data and training. Imports no web code."""

from kensa.models.artifacts import load_detector
from kensa.models.registry import (
    DetectorSpec,
    create_detector,
    get_spec,
    list_detectors,
    register_detector,
)
from kensa.models.types import Detection, Finding, Task, Verdict

__all__ = [
    "Detection",
    "DetectorSpec",
    "Finding",
    "Task",
    "Verdict",
    "create_detector",
    "get_spec",
    "list_detectors",
    "load_detector",
    "register_detector",
]
