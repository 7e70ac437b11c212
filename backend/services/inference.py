"""The detectors the service runs: loaded once, called off the event loop, bounded at once.

Every artifact directory under ``MODEL_DIR`` (one with a ``config.json``) is loaded, plus any
``--model`` directories. With no trained one, the demo pipeline (``services.demo``: a
classifier, a U-Net and a PatchCore on synthetic steel strips) is served, flagged as a demo
everywhere the API shows it; missing demo detectors are fitted and cached under ``MODEL_DIR``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from kensa.backend.services.demo import (  # noqa: F401  (re-exported)
    DEMO_CONFIG,
    DEMO_DIR_NAME,
    DEMO_NOTICE,
    DEMO_STRIP_SIZE,
    RECIPES,
    demo_names,
    fit_demo,
    fit_demo_detector,
)
from kensa.models.artifacts import CONFIG_FILE, load_detector, write_config
from kensa.models.base import Detector
from kensa.models.types import Detection

log = logging.getLogger(__name__)

@dataclass
class LoadedDetector:
    detector: Detector
    directory: Path
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def demo(self) -> bool:
        return bool(self.detector.metadata.demo)

    def describe(self) -> dict[str, Any]:
        return {**self.detector.describe(), "notes": self.detector.metadata.notes,
                "artifact": self.directory.name}


def artifact_dirs(model_dir: Path) -> list[Path]:
    """Artifact directories directly under ``model_dir`` (each holds a config.json)."""
    if not model_dir.is_dir():
        return []
    return sorted(p for p in model_dir.iterdir()
                  if not p.name.startswith(".") and (p / CONFIG_FILE).is_file())


class DetectorPool:
    """Named detectors plus the limiter that bounds concurrent inference."""

    def __init__(self, detectors: Sequence[LoadedDetector], concurrency: int) -> None:
        self._by_name: dict[str, LoadedDetector] = {}
        for loaded in detectors:
            if loaded.name in self._by_name:
                raise ValueError(f"two detectors are named {loaded.name!r}: "
                                 f"{self._by_name[loaded.name].directory} and {loaded.directory}")
            self._by_name[loaded.name] = loaded
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.shadows: dict[str, LoadedDetector] = {}
        self.pending: list[str] = []  # demo tasks still being fitted in the background
        self.deploy_lock = threading.Lock()  # versions.deploy / apply_deployed

    @classmethod
    def load(cls, model_dir: Path, extra: Sequence[Path] = (), concurrency: int = 2,
             demo_good_images: int = 40, device: str | None = None,
             demo_tasks: Sequence[str] = tuple(RECIPES)) -> DetectorPool:
        """Load every artifact under ``model_dir`` and ``extra``. With no trained one, serve the
        cached demo detectors, fitting the demo PatchCore now when it is missing; the other
        missing demo tasks are left in ``pending`` for the caller to fit in the background."""
        dirs = artifact_dirs(model_dir) + [Path(p) for p in extra]
        pending: list[str] = []
        if all(d.name in demo_names() for d in dirs):
            cached = {d.name for d in dirs}
            for task in demo_tasks:
                if RECIPES[task].name in cached:
                    continue
                if task == "anomaly" or not dirs:
                    dirs.append(fit_demo(model_dir, task, n_good=demo_good_images))
                else:
                    pending.append(task)
        loaded = []
        for directory in dirs:
            detector = load_detector(directory, device=device)
            log.info("loaded detector %s (%s, %s) from %s", detector.name, detector.kind,
                     detector.version, directory)
            loaded.append(LoadedDetector(detector, Path(directory)))
        pool = cls(loaded, concurrency)
        pool.pending = pending
        return pool

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def get(self, name: str) -> LoadedDetector:
        return self._by_name[name]

    def all(self) -> list[LoadedDetector]:
        return list(self._by_name.values())

    def select(self, names: Sequence[str] | None) -> list[LoadedDetector]:
        """The named detectors (all when ``names`` is empty); KeyError for an unknown one."""
        if not names:
            return self.all()
        unknown = [n for n in names if n not in self._by_name]
        if unknown:
            raise KeyError(", ".join(unknown))
        return [self._by_name[n] for n in dict.fromkeys(names)]

    async def run(self, image: np.ndarray, detectors: Sequence[LoadedDetector]
                  ) -> list[Detection]:
        """Run ``detectors`` on ``image`` in worker threads, at most ``concurrency`` at once."""
        out = []
        for loaded in detectors:
            out.append(await anyio.to_thread.run_sync(loaded.detector, image,
                                                      limiter=self.limiter))
        return out

    def swap(self, loaded: LoadedDetector) -> LoadedDetector | None:
        """Serve ``loaded`` under its name from the next call on (one dict assignment, so a
        request sees the old or the new instance, never a mix); returns the replaced one."""
        by_name = dict(self._by_name)
        previous = by_name.get(loaded.name)
        by_name[loaded.name] = loaded
        self._by_name = by_name
        return previous

    def set_shadow(self, loaded: LoadedDetector | None, name: str) -> None:
        """Run ``loaded`` beside the active ``name`` (None stops it)."""
        shadows = dict(self.shadows)
        if loaded is None:
            shadows.pop(name, None)
        else:
            shadows[name] = loaded
        self.shadows = shadows

    def set_threshold(self, name: str, value: float, label: str | None = None
                      ) -> dict[str, Any]:
        """Change a threshold at run time and persist it to the artifact's config.json."""
        loaded = self._by_name[name]
        with loaded.lock:
            previous = loaded.detector.post.model_copy()
            loaded.detector.set_threshold(value, label)
            try:
                write_config(loaded.detector, loaded.directory)
            except Exception:
                loaded.detector.post = previous
                raise
        return loaded.describe()
