"""kensa's ML core: detectors, their registry, artifacts, data and training. Imports no web code.

The public names below load on first use (PEP 562), so importing a light submodule such as
``kensa.models.cli`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detection": "kensa.models.types",
    "Finding": "kensa.models.types",
    "Task": "kensa.models.types",
    "Verdict": "kensa.models.types",
    "DetectorSpec": "kensa.models.registry",
    "create_detector": "kensa.models.registry",
    "get_spec": "kensa.models.registry",
    "list_detectors": "kensa.models.registry",
    "register_detector": "kensa.models.registry",
    "load_detector": "kensa.models.artifacts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
