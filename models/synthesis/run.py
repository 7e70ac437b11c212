"""``kensa synthesize``: learn one label from a dataset's training split, write marked
synthetic images (only the training split is read, so held-out images never leak)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from kensa.models.data.layouts import load_dataset
from kensa.models.synthesis.base import write_synthetic
from kensa.models.synthesis.inpaint import WeightsRequired
from kensa.models.synthesis.registry import create_generator


def synthesize(data: Path, label: str, method: str, count: int, out: Path, *,
               layout: str = "auto", size: int = 64, epochs: int = 50, seed: int = 0,
               weights: str | None = None, limit: int | None = None,
               device: str = "cpu", **options) -> dict:
    """Fit ``method`` on the ``label`` images of ``data``'s training split (the first
    ``limit`` of them when given) and write ``count`` images to ``out/<label>/``."""
    dataset = load_dataset(data, layout, seed=seed)
    train = dataset.split("train")
    samples = [s for s in train if label in s.labels]
    if not samples:
        raise ValueError(f"no training images labelled {label!r} in {data}; labels: "
                         f"{list(dataset.classes)}")
    if limit:
        samples = samples[:limit]
    good = [s for s in train if s.is_good]
    extra = {"weights": weights} if method == "inpaint" else {}
    generator = create_generator(method, size=size, epochs=epochs, seed=seed, device=device,
                                 **extra, **options)
    report = generator.fit(label, samples, good)
    items = generator.generate(count)
    shape = Counter(s.load_image().shape[:2] for s in samples[:20]).most_common(1)[0][0]
    info = {"seed": seed, "source": str(dataset.root), "trained_on": len(samples),
            "generator_size": size}
    paths = write_synthetic(out, label, method, items, shape, info)
    report.pop("curves", None)
    return {"written": len(paths), "out": str(out / label), "image_size": list(shape),
            "fit": report}


def synthesize_from_args(args: argparse.Namespace) -> int:
    try:
        result = synthesize(args.data, args.label, args.method, args.count, args.out,
                            layout=args.layout, size=args.size, epochs=args.epochs,
                            seed=args.seed, weights=args.weights, limit=args.limit,
                            device=args.device or "cpu")
    except WeightsRequired as exc:
        raise SystemExit(f"kensa synthesize: {exc}") from None
    except ValueError as exc:
        raise SystemExit(f"kensa synthesize: {exc}") from None
    print(json.dumps(result, indent=2, default=float))
    return 0
