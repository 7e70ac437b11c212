"""The one extension point: detectors register here; the backend and the CLI only look them up.

Adding a detector means writing a module in ``models/detectors/`` that decorates its class with
``@register_detector``; nothing in the backend changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from kensa.models.base import Detector, DetectorSpec
from kensa.models.types import LearnsFrom, Task

_REGISTRY: dict[str, DetectorSpec] = {}
_BUILTIN_MODULES = (
    "kensa.models.detectors.patchcore",
    "kensa.models.detectors.padim",
    "kensa.models.detectors.flow",
    "kensa.models.detectors.vae",
    "kensa.models.detectors.inpaint",
    "kensa.models.detectors.classifier",
    "kensa.models.detectors.segmenter",
)
_loaded_builtins = False

__all__ = ["DetectorSpec", "create_detector", "get_spec", "list_detectors",
           "register_detector"]


def register_detector(
    kind: str,
    *,
    task: Task | str,
    learns_from: LearnsFrom | str,
    description: str = "",
    defaults: dict[str, Any] | None = None,
    quick: dict[str, Any] | None = None,
) -> Callable[[type[Detector]], type[Detector]]:
    """Register a ``Detector`` subclass under ``kind``; may be stacked to register variants."""

    def decorate(cls: type[Detector]) -> type[Detector]:
        if kind in _REGISTRY and _REGISTRY[kind].cls is not cls:
            raise ValueError(f"detector kind {kind!r} is already registered")
        _REGISTRY[kind] = DetectorSpec(
            kind=kind,
            task=Task(task),
            learns_from=LearnsFrom(learns_from),
            cls=cls,
            description=description or (cls.__doc__ or "").strip().splitlines()[0],
            defaults=dict(defaults or {}),
            quick=dict(quick or {}),
        )
        return cls

    return decorate


def _load_builtins() -> None:
    global _loaded_builtins
    if _loaded_builtins:
        return
    _loaded_builtins = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency, not an absent module
                raise


def list_detectors() -> list[DetectorSpec]:
    """Every registered detector kind, sorted by name."""
    _load_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_spec(kind: str) -> DetectorSpec:
    _load_builtins()
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown detector kind {kind!r}; known: {known}") from None


def create_detector(kind: str, *, weights: str = "auto", device: str | None = None,
                    **config: Any) -> Detector:
    """A new, untrained detector of ``kind``; ``weights`` picks the backbone's start weights
    (``auto`` = hub when reachable, else packaged ImageNet weights; ``hub``, ``packaged``,
    a checkpoint path, or ``none`` for random init); ``device`` as in ``default_device``."""
    spec = get_spec(kind)
    return spec.cls(spec.config(**config), spec=spec, weights=weights, device=device)
