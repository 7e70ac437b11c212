"""The detectors the service runs: loaded once, called off the event loop, bounded at once.

Every artifact directory under ``MODEL_DIR`` (one with a ``config.json``) is loaded, plus any
``--model`` directories. With none, a demo PatchCore is fitted on synthetic good steel strips,
cached in ``MODEL_DIR/demo-patchcore`` and flagged as a demo everywhere the API shows it.
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

from kensa.models.artifacts import CONFIG_FILE, load_detector, save, write_config
from kensa.models.base import Detector
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.registry import create_detector
from kensa.models.types import Detection

log = logging.getLogger(__name__)

DEMO_DIR_NAME = "demo-patchcore"
DEMO_STRIP_SIZE = (256, 1600)
DEMO_CONFIG = {"input_size": (128, 800), "coreset_ratio": 0.1, "max_bank": 8000}
"""Keeps the strips' aspect ratio; on 15 good + 15 defective unseen strips: AUROC 1.0."""
DEMO_NOTICE = (
    "Demo detector: a PatchCore fitted on synthetic steel strips, not on your parts. "
    "Train one on your own good images (kensa train anomaly) for real verdicts."
)


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
    return sorted(p for p in model_dir.iterdir() if (p / CONFIG_FILE).is_file())


def fit_demo_detector(model_dir: Path, n_good: int = 40,
                      size: tuple[int, int] = DEMO_STRIP_SIZE) -> Path:
    """Fit the demo PatchCore on synthetic good strips and save it under ``model_dir``."""

    log.warning("no detectors in %s: fitting a demo PatchCore on %d synthetic strips",
                model_dir, n_good)
    detector = create_detector("patchcore", name=DEMO_DIR_NAME, **DEMO_CONFIG)
    detector.fit(SteelStripGenerator(size=size, seed=0).samples(n_good, 0))
    detector.metadata.demo = True
    detector.metadata.notes = (
        f"Demo: fitted on {n_good} synthetic good steel strips ({size[0]}x{size[1]}) "
        "by the service because no trained detector was found. Not a model of your parts."
    )
    detector.metadata.training_data.update(source="kensa.models.data.synthetic", seed=0,
                                           size=list(size))
    return save(detector, model_dir / DEMO_DIR_NAME)


class DetectorPool:
    """Named detectors plus the limiter that bounds concurrent inference."""

    def __init__(self, detectors: Sequence[LoadedDetector], concurrency: int,
                 limiter: anyio.CapacityLimiter | None = None) -> None:
        self._by_name: dict[str, LoadedDetector] = {}
        for loaded in detectors:
            if loaded.name in self._by_name:
                raise ValueError(f"two detectors are named {loaded.name!r}: "
                                 f"{self._by_name[loaded.name].directory} and {loaded.directory}")
            self._by_name[loaded.name] = loaded
        self.limiter = limiter or anyio.CapacityLimiter(concurrency)
        self.shadows: dict[str, LoadedDetector] = {}

    @classmethod
    def load(cls, model_dir: Path, extra: Sequence[Path] = (), concurrency: int = 2,
             demo_good_images: int = 40, device: str | None = None,
             limiter: anyio.CapacityLimiter | None = None) -> DetectorPool:
        """Load every artifact under ``model_dir`` and ``extra``; fit the demo when none."""
        dirs = artifact_dirs(model_dir) + [Path(p) for p in extra]
        if not dirs:
            dirs = [fit_demo_detector(model_dir, n_good=demo_good_images)]
        loaded = []
        for directory in dirs:
            detector = load_detector(directory, device=device)
            log.info("loaded detector %s (%s, %s) from %s", detector.name, detector.kind,
                     detector.version, directory)
            loaded.append(LoadedDetector(detector, Path(directory)))
        return cls(loaded, concurrency, limiter)

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
