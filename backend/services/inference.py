"""The detectors the service runs: loaded once, called off the event loop, bounded at once.

Every artifact directory under ``MODEL_DIR`` (one with a ``config.json``) is loaded, plus any
``--model`` directories. With no trained one, the demo pipeline (``services.demo``: a
classifier, a U-Net and a PatchCore on synthetic steel strips) is served, flagged as a demo
everywhere the API shows it; missing demo detectors are fitted and cached under ``MODEL_DIR``.

Dynamic batching (``Batcher``): concurrent requests for one detector are gathered into one
``predict_batch`` call of at most ``batch_max`` photos. A request waits up to ``batch_wait_ms``
for company only while another request of that detector is in flight, so a lone client pays
no wait at all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
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


def _predict(loaded: LoadedDetector, images: list[np.ndarray]) -> list[Detection]:
    detector = loaded.detector
    detections = ([detector.predict(images[0])] if len(images) == 1
                  else detector.predict_batch(images))
    for detection in detections:
        detection.runtime = detector.runtime
    return detections


class Batcher:
    """Gathers concurrent calls of one detector into ``predict_batch`` calls (see the module
    docstring); at most ``workers`` batches of it run at once. Workers start on demand and stop
    when nothing is queued, so no task outlives the requests it serves."""

    def __init__(self, loaded: LoadedDetector, limiter: anyio.CapacityLimiter, max_size: int,
                 wait_s: float, workers: int) -> None:
        self.loaded, self.limiter = loaded, limiter
        self.max_size, self.wait_s, self.workers = max_size, wait_s, workers
        self.sizes: Counter[int] = Counter()  # batch size -> how many batches ran
        self._queue: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._arrived = asyncio.Event()
        self._running = 0
        self._in_flight = 0

    async def __call__(self, image: np.ndarray) -> Detection:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((image, future))
        self._in_flight += 1
        self._arrived.set()
        if self._running < self.workers:
            self._running += 1
            asyncio.get_running_loop().create_task(self._work())
        try:
            return await future
        finally:
            self._in_flight -= 1

    async def _gather(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [self._queue.popleft()]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_size:
            if self._queue:
                batch.append(self._queue.popleft())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._in_flight <= len(batch):  # nobody else is waiting
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return [(image, future) for image, future in batch if not future.done()]

    async def _work(self) -> None:
        try:
            while self._queue:
                batch = await self._gather()
                if not batch:
                    continue
                self.sizes[len(batch)] += 1
                try:
                    detections = await anyio.to_thread.run_sync(
                        _predict, self.loaded, [image for image, _ in batch],
                        limiter=self.limiter)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), detection in zip(batch, detections, strict=True):
                    if not future.done():
                        future.set_result(detection)
        finally:
            self._running -= 1


class DetectorPool:
    """Named detectors plus the limiter that bounds concurrent inference."""

    def __init__(self, detectors: Sequence[LoadedDetector], concurrency: int,
                 limiter: anyio.CapacityLimiter | None = None, batch_max: int = 1,
                 batch_wait_ms: float = 5.0) -> None:
        self._by_name: dict[str, LoadedDetector] = {}
        for loaded in detectors:
            if loaded.name in self._by_name:
                raise ValueError(f"two detectors are named {loaded.name!r}: "
                                 f"{self._by_name[loaded.name].directory} and {loaded.directory}")
            self._by_name[loaded.name] = loaded
        self.concurrency = concurrency
        self.limiter = limiter or anyio.CapacityLimiter(concurrency)
        self.shadows: dict[str, LoadedDetector] = {}
        self.batch_max, self.batch_wait_s = batch_max, batch_wait_ms / 1000
        self._batchers: dict[int, Batcher] = {}
        self.pending: list[str] = []  # demo tasks still being fitted in the background
        self.deploy_lock = threading.Lock()  # versions.deploy / apply_deployed

    @classmethod
    def load(cls, model_dir: Path, extra: Sequence[Path] = (), concurrency: int = 2,
             demo_good_images: int = 40, device: str | None = None,
             limiter: anyio.CapacityLimiter | None = None, batch_max: int = 1,
             batch_wait_ms: float = 5.0, demo_tasks: Sequence[str] = tuple(RECIPES)
             ) -> DetectorPool:
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
        pool = cls(loaded, concurrency, limiter, batch_max=batch_max,
                   batch_wait_ms=batch_wait_ms)
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

    def batcher(self, loaded: LoadedDetector) -> Batcher:
        """The batcher of one loaded detector (made on first use; kept while it is served)."""
        batcher = self._batchers.get(id(loaded))
        if batcher is None or batcher.loaded is not loaded:
            batcher = Batcher(loaded, self.limiter, self.batch_max, self.batch_wait_s,
                              workers=self.concurrency)
            self._batchers[id(loaded)] = batcher
        return batcher

    async def run(self, image: np.ndarray, detectors: Sequence[LoadedDetector]
                  ) -> list[Detection]:
        """Run ``detectors`` on ``image`` in worker threads, at most ``concurrency`` at once;
        batched with concurrent requests when ``batch_max`` > 1."""
        out = []
        for loaded in detectors:
            if self.batch_max > 1:
                out.append(await self.batcher(loaded)(image))
            else:
                out.extend(await anyio.to_thread.run_sync(_predict, loaded, [image],
                                                          limiter=self.limiter))
        return out

    def swap(self, loaded: LoadedDetector) -> LoadedDetector | None:
        """Serve ``loaded`` under its name from the next call on (one dict assignment, so a
        request sees the old or the new instance, never a mix); returns the replaced one."""
        by_name = dict(self._by_name)
        previous = by_name.get(loaded.name)
        by_name[loaded.name] = loaded
        self._by_name = by_name
        if previous is not None:  # its queued requests still finish: the batcher keeps it
            self._batchers.pop(id(previous), None)
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
