"""Issue 13's data methods measured on NEU-DET classification (held-out, same seed).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/data_methods.py \\
        --data /work/shared/data/neu-det --runs flips,blackout,minority,minority+dcgan

Split: ``load_dataset(neu-det, seed)`` (seeded, stratified, by base image) train/val/test;
NEU's own ``validation_images`` are not used. The classifier is EfficientNet-Lite0 (packaged
ImageNet weights) at a small input for a few epochs: short runs on a shared 2-core CPU, so
the absolute accuracy is below a full run; the point is with vs without under one seed.

- ``flips`` / ``blackout`` / ``default`` / ``paste``: the augmentation recipe.
- ``minority``: the rare class (``--rare``, default crazing) cut to ``--keep`` training images.
- ``minority+dcgan`` / ``minority+vae``: the same, plus ``--synth`` images of the rare class
  from the generator trained on those ``--keep`` images only (``kensa.models.synthesis``).

Metrics on the test split: top-1 accuracy on the image's class (file-name prefix), the rare
class's recall (top-1 = rare among its test images), with 95 % bootstrap intervals over test
images, and paired differences against the run named by ``--baseline`` for each group.
Results: JSON in ``bench/results/``; models are not kept.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUNDS = 2000


def bootstrap(values: np.ndarray, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(ROUNDS)]
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


def run(name: str, args, dataset) -> dict:
    from kensa.models.registry import create_detector
    from kensa.models.synthesis.base import synthetic_samples, write_synthetic
    from kensa.models.synthesis.registry import create_generator

    parts = name.split("+")
    recipe = parts[0] if parts[0] != "minority" else "flips"
    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    info: dict = {"run": name, "recipe": recipe}
    if parts[0] == "minority":
        rare = [s for s in train if s.labels[0] == args.rare]
        keep = set(id(s) for s in rare[:args.keep])
        train = [s for s in train if s.labels[0] != args.rare or id(s) in keep]
        info["rare_train_images"] = len(keep)
        if len(parts) > 1:
            method = parts[1]
            t0 = time.perf_counter()
            options = {"ngf": 32, "batch_size": 16} if method == "dcgan" else {"levels": 4}
            gen = create_generator(method, size=64, epochs=args.gen_epochs, seed=args.seed,
                                   **options)
            fit = gen.fit(args.rare, rare[:args.keep], [])
            fit.pop("curves", None)
            with tempfile.TemporaryDirectory() as tmp:
                write_synthetic(Path(tmp), args.rare, method, gen.generate(args.synth),
                                (200, 200), {"seed": args.seed})
                extra = synthetic_samples(Path(tmp))
                for s in extra:  # decode now: the folder goes away
                    s.image, s.path = s.load_image(), None
            train = [*train, *extra]
            info.update(generator=fit, synthetic=len(extra),
                        generator_seconds=round(time.perf_counter() - t0, 1))
    detector = create_detector("classifier_lite0", weights="packaged",
                               labels=list(dataset.classes), input_size=(args.size, args.size),
                               epochs=args.epochs, batch_size=32, patience=args.epochs,
                               augment=recipe, seed=args.seed, lr=1e-3)
    t0 = time.perf_counter()
    detector.fit(train, val, progress=False)
    info["train_seconds"] = round(time.perf_counter() - t0, 1)
    probs = detector.probabilities([s.load_image() for s in test])
    truth = np.array([dataset.classes.index(s.labels[0]) for s in test])
    correct = (probs.argmax(1) == truth).astype(float)
    rare = truth == dataset.classes.index(args.rare)
    info.update(n_train=len(train), n_test=len(test), accuracy=float(correct.mean()),
                accuracy_ci95=bootstrap(correct), rare_recall=float(correct[rare].mean()),
                rare_recall_ci95=bootstrap(correct[rare]), n_rare_test=int(rare.sum()),
                correct=correct.tolist())
    return info


def paired(a: dict, b: dict, key: str, rare_only: bool, rare_mask: np.ndarray) -> dict:
    ca, cb = np.array(a["correct"]), np.array(b["correct"])
    if rare_only:
        ca, cb = ca[rare_mask], cb[rare_mask]
    diff = ca - cb
    return {"runs": f"{a['run']} - {b['run']}", "metric": key,
            "difference": float(diff.mean()), "ci95": bootstrap(diff)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/neu-det"))
    p.add_argument("--runs", default="flips,blackout,minority,minority+dcgan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--rare", default="crazing")
    p.add_argument("--keep", type=int, default=30)
    p.add_argument("--synth", type=int, default=200)
    p.add_argument("--gen-epochs", type=int, default=300)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    from kensa.models.data.layouts import load_dataset

    dataset = load_dataset(args.data, "neu", seed=args.seed)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"data_methods-neu-{stamp}.json"
    report = {"date": stamp, "data": str(args.data), "split": dataset.summary()["splits"],
              "args": {k: str(v) for k, v in vars(args).items()},
              "machine": "2 CPU cores shared with other jobs, 1 thread", "runs": []}
    for name in args.runs.split(","):
        result = run(name, args, dataset)
        report["runs"].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "correct"}), flush=True)
        out.write_text(json.dumps(report, indent=1))
    test = dataset.split("test")
    rare_mask = np.array([s.labels[0] == args.rare for s in test])
    by_name = {r["run"]: r for r in report["runs"]}
    diffs = []
    for name, r in by_name.items():
        base = "minority" if name.startswith("minority+") else "flips"
        if name != base and base in by_name:
            diffs.append(paired(r, by_name[base], "accuracy", False, rare_mask))
            diffs.append(paired(r, by_name[base], "rare_recall", True, rare_mask))
    report["paired"] = diffs
    for d in diffs:
        print(json.dumps(d))
    out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
