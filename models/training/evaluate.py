"""``kensa eval``: held-out metrics of any artifact on a dataset split, dispatched by task.

The split is rebuilt with the seed and fractions the artifact recorded at training time
(``training_data``), so ``--split test`` is the same held-out set the training report used.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

from kensa.models.artifacts import load_detector
from kensa.models.data.layouts import load_dataset
from kensa.models.training.eval_anomaly import evaluate_anomaly, evaluation_samples
from kensa.models.training.eval_supervised import evaluate_supervised
from kensa.models.types import Task

log = logging.getLogger(__name__)
SPLIT_KEYS = ("seed", "val_fraction", "test_fraction", "dedupe")


def load_split(data: Path, layout: str, split: str, training_data: dict[str, Any]):
    """``(dataset, samples)`` of ``split`` (``all`` = every sample), split as at training."""

    accepted = inspect.signature(load_dataset).parameters
    recorded = {k: training_data[k] for k in SPLIT_KEYS if k in training_data and k in accepted}
    dataset = load_dataset(data, layout, **recorded)
    if split == "all":
        return dataset, list(dataset.samples)
    samples = dataset.split(split)
    if not samples:
        counts = {name: len(dataset.split(name)) for name in ("train", "val", "test")}
        raise ValueError(f"split {split!r} of {data} is empty (splits: {counts}); "
                         f"use --split all to score every image")
    return dataset, samples


def evaluate_artifact(artifact: str | Path, data: str | Path, layout: str = "auto",
                      split: str = "test", robust: bool = False,
                      plots: str | Path | None = None) -> dict[str, Any]:
    """One JSON-ready report: what was scored, then the task's metrics."""
    detector = load_detector(artifact)
    unseen = detector.task == Task.ANOMALY and split == "unseen"
    dataset, samples = load_split(Path(data), layout, "all" if unseen else split,
                                  detector.metadata.training_data)
    plots = Path(plots) if plots else None
    if detector.task == Task.ANOMALY:

        if unseen:  # good-only fits never see defects: score all but the good train images
            samples, split = evaluation_samples(dataset)

        metrics = evaluate_anomaly(detector, samples, robust=robust, plots=plots, split=split)
    else:

        metrics = evaluate_supervised(detector, samples, robust=robust, plots=plots)
    return {"artifact": str(artifact), "detector": detector.kind, "name": detector.name,
            "version": detector.version, "task": detector.task.value, "data": str(data),
            "layout": dataset.layout, "split": split, **metrics}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    """A readable summary: headline figures, a per-class table, the confusion matrix."""
    print(f"{report.get('name')} ({report.get('detector')}, {report.get('version')}) on "
          f"{report.get('data')} [{report.get('layout')}] split={report.get('split')}: "
          f"{report.get('n_images')} images")
    skip = {"artifact", "detector", "name", "version", "task", "data", "layout", "split",
            "n_images"}
    nested = {}
    for key, value in report.items():
        if key in skip:
            continue
        if isinstance(value, dict | list):
            nested[key] = value
        else:
            print(f"  {key:24s} {_fmt(value)}")
    per_class = nested.pop("per_class", None)
    if per_class:
        columns = sorted({k for row in per_class.values() for k in row})
        print("  " + f"{'class':20s}" + "".join(f"{c:>16s}" for c in columns))
        for label, row in per_class.items():
            print("  " + f"{label:20s}" + "".join(f"{_fmt(row.get(c)):>16s}" for c in columns))
    cm = nested.pop("confusion_matrix", None)
    if cm and "matrix" in cm:
        names = cm["labels"]
        width = max(8, *(len(n) for n in names)) + 1
        print("  confusion matrix (rows true, columns predicted)")
        print("  " + " " * width + "".join(f"{n[:width - 1]:>{width}s}" for n in names))
        for name, counts in zip(names, cm["matrix"], strict=True):
            print("  " + f"{name:{width}s}" + "".join(f"{c:>{width}d}" for c in counts))
    elif cm:
        print(f"  confusion per class {cm.get('layout', '')}: {json.dumps(cm['per_class'])}")
    for key, value in nested.items():
        print(f"  {key}: {json.dumps(value, default=float)}")
