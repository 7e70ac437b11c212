"""The one extension point: detectors register here; the backend and the CLI only look them up.

Adding a detector means writing a module in ``models/detectors/`` that decorates its class with
``@register_detector``; nothing in the backend changes.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kensa.models.types import LearnsFrom, Task

if TYPE_CHECKING:
    from kensa.models.detectors.base import Detector

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


def create_detector(kind: str, *, weights: str = "auto", **config: Any) -> Detector:
    """A new, untrained detector of ``kind``; ``weights`` picks the backbone's start weights
    (``auto`` = hub when reachable, else packaged ImageNet weights; ``hub``, ``packaged``,
    a checkpoint path, or ``none`` for random init)."""
    spec = get_spec(kind)
    return spec.cls(spec.config(**config), weights=weights, kind=kind)


def load_detector(path: str | Path, device: str | None = None,
                  runtime: str | None = None) -> Detector:
    """A trained detector from an artifact directory written by ``models.artifacts.save`` or
    ``kensa export`` (runtime from its metadata unless ``runtime`` is given)."""
    from kensa.models.artifacts import load

    return load(Path(path), device=device, runtime=runtime)


def artifact_kind(path: str | Path) -> str:
    """The registered kind stored in an artifact directory, without loading weights."""
    return json.loads((Path(path) / "config.json").read_text())["kind"]
