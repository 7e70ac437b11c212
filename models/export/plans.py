"""Which part of each detector's ``nn.Module`` becomes the exported graph.

The graph replaces one method of the detector's module (``forward``, ``forward_features`` or
``embed``); everything around it (resizing, normalisation, thresholds, findings, verdicts, Grad-CAM
heads, PatchCore's chunked nearest-neighbour search) stays the detector's own Python code, so the
eager and exported paths cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from kensa.models.base import Detector


@dataclass(frozen=True)
class ExportPlan:
    """The method of ``detector.model`` that is exported, and the tensors that stay in torch."""

    method: str
    keep: Callable[[nn.Module], set[str]] = lambda model: set()
    note: str = ""


def _classifier_head(model: nn.Module) -> set[str]:
    head = model.get_classifier()  # timm: the linear layer after global pooling
    prefix = next(name for name, module in model.named_modules() if module is head)
    return {f"{prefix}."}


def plan_for(detector: Detector) -> ExportPlan:
    """The export plan of a detector (by class); ``ValueError`` if its kind cannot be exported."""
    from kensa.models.detectors.classifier import DefectClassifier
    from kensa.models.detectors.flow import Flow
    from kensa.models.detectors.inpaint import Inpaint
    from kensa.models.detectors.padim import Padim
    from kensa.models.detectors.patchcore import PatchCore
    from kensa.models.detectors.segmenter import DefectSegmenter
    from kensa.models.detectors.vae import Vae

    if getattr(detector.config, "native_resolution", False):
        raise ValueError(
            f"detector {detector.name!r} scores at native resolution (tiles of varying number, "
            "stitched in Python); its graph cannot be exported yet: serve it with torch, or "
            "export a detector trained with native_resolution=false")
    plans: dict[type, ExportPlan] = {
        DefectClassifier: ExportPlan(
            "forward_features", _classifier_head,
            "backbone features exported; pooling + linear head stay in torch so Grad-CAM "
            "keeps its exact gradients (the head is a few KB)"),
        DefectSegmenter: ExportPlan("forward", note="whole U-Net: batch -> class logits"),
        PatchCore: ExportPlan(
            "embed", lambda model: {"memory_bank"},
            "patch embedding exported; the k-NN search stays in shared torch code, chunked "
            "(4096 queries x 16384 bank rows at a time), so memory is bounded in every runtime"),
        Padim: ExportPlan("forward", note="features + Mahalanobis distance per position"),
        Flow: ExportPlan("forward", note="features + coupling steps -> NLL map"),
        Vae: ExportPlan("forward", note="deterministic reconstruction; the difference map is "
                                        "shared code"),
        Inpaint: ExportPlan(
            "forward", lambda model: {"cell_threshold"},
            "the inpainting U-Net; the iterative, data-dependent inference loop stays in "
            "shared code and calls the graph each round"),
    }
    for cls in type(detector).__mro__:
        if cls in plans:
            return plans[cls]
    raise ValueError(f"detector kind {detector.kind!r} has no export plan")


class MethodModule(nn.Module):
    """``model.<method>`` as a module to trace."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x):
        return getattr(self.model, self.method)(x)
