"""``kensa train classify|segment``: train on a labelled folder, report held-out metrics, save.

The dataset is split train/val/test (by group, so rotated twins stay together); the model
trains on ``train`` with early stopping and threshold tuning on ``val``; validation and test
metrics, the splits and the training curves are saved with the artifact in ``--out``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from kensa.models.artifacts import save
from kensa.models.backbones import WeightsUnavailable, hub_reachable
from kensa.models.data.augment import aspect_kept_size
from kensa.models.data.layouts import load_dataset
from kensa.models.data.tiling import tile_shape
from kensa.models.registry import create_detector, get_spec, list_detectors
from kensa.models.training.eval_supervised import evaluate_supervised
from kensa.models.types import Task

log = logging.getLogger(__name__)

DEFAULT_KIND = {"classify": "classifier", "segment": "segmenter"}
OFFLINE_KIND = {"classify": "classifier_lite0", "segment": "segmenter_lite0"}
"""Used when no --arch is given, weights are ``auto`` and the hub is unreachable: the B3
defaults have no offline ImageNet weights, and random init is never picked silently."""
ROTATE_DEGREES = 15.0
MAX_SHORT_SIDE = 256


def resolve_kind(task: str, arch: str | None, weights: str, backbone: str | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """The detector kind and config overrides for ``--arch`` (a registered kind of the task)
    and ``--backbone`` (another backbone for the default kind)."""
    wanted = Task(task)
    if backbone is not None:
        arch = backbone
    elif arch is None:
        if weights == "auto" and not hub_reachable():
            kind = OFFLINE_KIND[task]
            log.warning("model hub unreachable: training %s (packaged ImageNet weights) instead "
                        "of %s; pass --arch %s --weights none for random init",
                        kind, DEFAULT_KIND[task], DEFAULT_KIND[task])
            return kind, {}
        return DEFAULT_KIND[task], {}
    kinds = {spec.kind: spec for spec in list_detectors()}
    if arch in kinds:
        if kinds[arch].task != wanted:
            raise SystemExit(f"--arch {arch} is a {kinds[arch].task} detector, not {task}")
        return arch, {}
    if task == "classify":
        return DEFAULT_KIND[task], {"arch": arch}
    import segmentation_models_pytorch as smp

    encoder = arch if arch.startswith("tu-") or arch in smp.encoders.get_encoder_names() \
        else f"tu-{arch}"
    return DEFAULT_KIND[task], {"encoder": encoder}


def default_input_size(shape: tuple[int, int]) -> tuple[int, int]:
    """Aspect kept, short side at most ``MAX_SHORT_SIDE`` (no upscaling), multiples of 32."""

    return aspect_kept_size(shape, short_side=min(MAX_SHORT_SIDE, min(shape)))


def train_from_args(args: argparse.Namespace) -> int:

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    dedupe = bool(getattr(args, "dedupe", False))
    dataset = load_dataset(args.data, args.layout, seed=args.seed, dedupe=dedupe)
    if dataset.group_leaks():
        raise SystemExit(f"{dataset.group_leaks()} groups straddle splits in {args.data}")
    train, val, test = (dataset.split(name) for name in ("train", "val", "test"))
    synthetic_dir = getattr(args, "synthetic", None)
    if synthetic_dir is not None:
        from kensa.models.synthesis.base import synthetic_samples

        extra = [s for s in synthetic_samples(synthetic_dir)
                 if set(s.labels) <= set(dataset.classes)]
        if not extra:
            raise SystemExit(f"no synthetic images of {list(dataset.classes)} in "
                             f"{synthetic_dir}")
        train = [*train, *extra]
        print(f"  + {len(extra)} synthetic training images from {synthetic_dir}")
    if not train:
        raise SystemExit(f"no training images found in {args.data} ({dataset.layout} layout)")
    if args.task == "segment" and not any(s.has_masks for s in train):
        raise SystemExit(f"{args.data} ({dataset.layout} layout) has no masks to segment")
    kind, overrides = resolve_kind(args.task, args.arch, args.weights,
                                   getattr(args, "backbone", None))
    spec = get_spec(kind)
    tiles = int(getattr(args, "tiles", 0) or 0)
    shape = train[0].load_image().shape[:2]
    if tiles:
        shape = tile_shape(shape, tiles)
    size = tuple(args.img_size) if args.img_size else default_input_size(shape)
    overrides.update(labels=list(dataset.classes), input_size=size, epochs=args.epochs,
                     batch_size=args.batch, lr=args.lr, patience=args.patience, seed=args.seed,
                     workers=args.workers, rotate=ROTATE_DEGREES if args.rotate else 0.0,
                     augment=getattr(args, "augment", "default"), tiles=tiles)
    if args.name:
        overrides["name"] = args.name
    try:
        detector = create_detector(kind, weights=args.weights, device=args.device, **overrides)
    except WeightsUnavailable as exc:
        raise SystemExit(f"{exc}") from None
    print(f"training {kind} ({spec.cls.Config(**{**spec.defaults, **overrides}).model_dump()})"
          f"\n  start weights: {detector.metadata.weights}\n  data: {dataset.root} "
          f"[{dataset.layout}] train {len(train)} / val {len(val)} / test {len(test)} images, "
          f"classes {list(dataset.classes)}\n  device: {detector.device}")
    report = detector.fit(train, val or None, out_dir=out, resume=args.resume, progress=True)
    metrics: dict[str, Any] = {}
    if val:
        metrics["val"] = evaluate_supervised(detector, val)
    if test:
        metrics["test"] = evaluate_supervised(detector, test, plots=out / "plots")
    detector.metadata.training_data = {
        **dataset.summary(), "seed": args.seed, "dedupe": dedupe,
        "augment": overrides["augment"], "tiles": tiles,
        "synthetic": None if synthetic_dir is None else {
            "folder": str(synthetic_dir), "count": len(extra)},
        "fit": {k: report[k] for k in ("epochs_run", "best_epoch", "monitor", "best_score",
                                       "stopped_early", "seconds", "history") if k in report},
    }
    detector.metadata.metrics = metrics
    save(detector, out)
    headline = ("accuracy", "single_label_accuracy", "macro_f1", "roc_auc", "dice", "iou",
                "dice_defective")
    for name, block in metrics.items():
        shown = ", ".join(f"{k} {block[k]:.4f}" for k in headline
                          if isinstance(block.get(k), float))
        print(f"{name} ({block['n_images']} images): {shown}")
    print(f"saved {detector.name} {detector.version} to {out} (curves: {out / 'curves.png'})")
    return 0
