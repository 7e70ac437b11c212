"""``kensa train anomaly``: fit a good-only detector, calibrate it, evaluate it, save it.

Data: a folder of good images only, or any layout ``models.data.layouts.load_dataset`` reads.
The detector fits on the good images of ``train``; thresholds are calibrated on ``val`` (good
images, plus the F1 optimum when ``val`` has labelled defects); metrics are measured on every
image it never fitted on (``test``, else ``val`` + the defective images of ``train``) and saved
with the artifact, with ROC / score-histogram plots and the training curves as PNGs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from kensa.models.artifacts import save
from kensa.models.data.layouts import load_dataset
from kensa.models.data.samples import Sample
from kensa.models.imaging import is_image_file
from kensa.models.registry import create_detector, get_spec
from kensa.models.training.eval_anomaly import evaluate_anomaly, evaluation_samples

log = logging.getLogger(__name__)

LONG_SIDE = 320
"""Default input: the images' aspect kept, long side 320, both sides multiples of 32."""


def auto_input_size(height: int, width: int, long_side: int = LONG_SIDE,
                    multiple: int = 32) -> tuple[int, int]:
    """An input size keeping the aspect ratio (e.g. KolektorSDD 1260x500 -> 320x128)."""
    scale = long_side / max(height, width)

    def side(n: int) -> int:
        return max(multiple, round(n * scale / multiple) * multiple)

    return side(height), side(width)


def _plain_folder(root: Path) -> bool:
    """A folder holding images directly (good-only data)."""
    return any(is_image_file(p) for p in root.iterdir())


def load_training_data(root: Path, layout: str = "auto", seed: int = 0
                       ) -> tuple[list[Sample], list[Sample], list[Sample], str, dict[str, Any]]:
    """(train, val, evaluation samples, evaluation split name, data summary)."""
    if layout == "auto" and _plain_folder(root):
        paths = sorted(p for p in root.iterdir() if is_image_file(p))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(paths))
        n_val = max(1, round(0.2 * len(paths)))
        val = [Sample(path=paths[i], split="val") for i in order[:n_val]]
        train = [Sample(path=paths[i], split="train") for i in order[n_val:]]
        summary = {"root": str(root), "layout": "good-only folder", "n_train_good": len(train),
                   "n_val_good": len(val)}
        return train, val, val, "val", summary

    dataset = load_dataset(root, layout=layout, seed=seed)
    train, val = list(dataset.split("train")), list(dataset.split("val"))
    evaluation, name = evaluation_samples(dataset)
    summary = {"root": str(root), "layout": dataset.layout, **dataset.summary()}
    return train, val, evaluation, name, summary


def _plot_curves(curves: dict[str, list[float]], directory: Path, kind: str) -> list[str]:
    """One PNG per training curve (seed 002 wants KL and MSE apart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, values in curves.items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(range(1, len(values) + 1), values, marker=".")
        ax.set(xlabel="epoch", ylabel=name, title=f"{kind}: {name}")
        if values and min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")
        path = directory / f"curve_{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(str(path))
    return written


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def print_summary(kind: str, fit: dict[str, Any], evaluation: dict[str, Any]) -> None:
    rows = [("fit seconds", fit.get("fit_seconds")),
            ("threshold", f"{fit.get('threshold'):.4g} ({fit.get('threshold_method')})")]
    for key in ("split", "n_good", "n_defect", "image_auroc", "pixel_auroc", "precision",
                "recall", "f1", "latency_ms_per_image"):
        rows.append((key, _round(evaluation.get(key))))
    if "robust" in evaluation:
        for key in ("image_auroc", "pixel_auroc", "f1"):
            rows.append((f"robust {key}", _round(evaluation["robust"].get(key))))
    width = max(len(k) for k, _ in rows)
    print(f"\n{kind}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


POSE_COPIES = 4  # ``--augment pose`` for detectors without the flow's per-epoch augmentation


def _config_overrides(args: argparse.Namespace, fields: dict[str, Any]) -> dict[str, Any]:
    """Config fields asked for by ``--native-resolution``, ``--tile`` and ``--set``; a field
    the detector does not have is an error, not silently ignored."""
    wanted: dict[str, Any] = dict(getattr(args, "overrides", None) or [])
    if getattr(args, "native_resolution", False):
        wanted["native_resolution"] = True
    if getattr(args, "tile", None):
        if not wanted.get("native_resolution"):
            raise SystemExit("--tile needs --native-resolution")
        wanted["tile"] = args.tile
    unknown = sorted(set(wanted) - set(fields))
    if unknown:
        raise SystemExit(f"{args.detector} has no config field {', '.join(unknown)}; it has: "
                         f"{', '.join(sorted(fields))}")
    return wanted


def train_from_args(args: argparse.Namespace) -> int:
    """Handler of ``kensa train anomaly`` (arguments parsed in ``models.cli``)."""

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    spec = get_spec(args.detector)
    if spec.learns_from.value != "good-only":
        raise SystemExit(f"{args.detector} is not a good-only detector; use `kensa train "
                         f"classify|segment`")
    train, val, evaluation, split, summary = load_training_data(args.data, args.layout, args.seed)
    good = [s for s in train if s.is_good]
    if len(good) < 2:
        raise SystemExit(f"need at least 2 good training images in {args.data}, got {len(good)}")
    size = args.img_size or auto_input_size(*good[0].load_image().shape[:2])
    overrides: dict[str, Any] = {"input_size": size, "seed": args.seed}
    if args.name:
        overrides["name"] = args.name
    fields = spec.cls.Config.model_fields
    overrides.update(_config_overrides(args, fields))
    if args.augment:  # flow: a fresh pose every epoch; the others: fixed pose copies
        if "augment" in fields:
            overrides["augment"] = True
        else:
            overrides.setdefault("pose_copies", POSE_COPIES)
    if args.epochs is not None and "epochs" in fields:
        overrides["epochs"] = args.epochs
    if "batch_size" in fields:
        overrides["batch_size"] = args.batch
    try:
        detector = create_detector(args.detector, weights=args.weights, device=args.device,
                                   **overrides)
    except ValidationError as exc:  # the config is validated before any weights load
        raise SystemExit(f"bad configuration for {args.detector}: {exc}") from None
    log.info("%s: input %sx%s, %d good training images, calibration on %d val images",
             args.detector, size[0], size[1], len(good), len(val))

    tracemalloc.start()
    started = time.perf_counter()
    report = detector.fit(good, val=val, batch_size=args.batch)
    wall = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = report.pop("curves", {})
    written = _plot_curves(curves, out, args.detector) if curves else []
    report.update(fit_wall_seconds=round(wall, 2), python_peak_mb=round(peak / 1e6, 1))

    evaluation_report = evaluate_anomaly(detector, evaluation, plots=out / "plots", split=split)
    detector.metadata.training_data = {**detector.metadata.training_data, **summary,
                                       "input_size": list(size), "seed": args.seed,
                                       "evaluation_split": split}
    detector.metadata.metrics = {"fit": report, "evaluation": evaluation_report,
                                 "curves": {k: [round(v, 6) for v in vals]
                                            for k, vals in curves.items()},
                                 "curve_plots": written}
    save(detector, out)
    print_summary(args.detector, report, evaluation_report)
    print(f"saved {detector.name} ({detector.version}) to {out}")
    print(json.dumps({"artifact": str(out), "version": detector.version}))
    return 0
