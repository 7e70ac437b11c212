"""Effect of agreement-filtered pseudo-labels (the Severstal recipe) on KolektorSDD (issue 13).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/pseudo_label_effect.py \\
        --data /work/shared/data/kolektorsdd

Same split as ``bench/severstal_effect.py`` (kensa's ``yolo`` layout at ``--seed``). The
``train`` photos are cut by group (part) into a labelled share (``--labelled``) and an
unlabelled rest whose labels and masks are hidden. A Lite0 classifier and a Lite0 U-Net are
trained on the labelled share (``labelled only``); both then label the unlabelled photos and a
photo is kept only where they agree (``models.severstal.agreement_pseudo_labels``); a fresh
U-Net is trained on labelled + kept photos (``+ pseudo-labels``). Both U-Nets use the same
seed, epochs and untuned post-processing (pixel threshold 0.5); val picks the best epoch only.
Metrics on the test photos, as in ``severstal_effect.py``: false alarms, misses, Kaggle dice and
dice over the defective photos, 95 % bootstrap intervals and the paired difference.
Also reported: how many pseudo-labels were kept and how many of them were right.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from severstal_effect import RESULTS, finish, paired, resamples, score, with_intervals  # noqa: E402


def cut_by_group(samples: list, labelled: float, seed: int) -> tuple[list, list]:
    """(labelled, unlabelled) with whole groups on one side, defective parts spread evenly."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list] = {}
    for s in samples:
        groups.setdefault(s.group or s.meta.get("name", id(s)), []).append(s)
    keys = sorted(groups, key=str)
    bad = [k for k in keys if any(s.labels for s in groups[k])]
    good = [k for k in keys if k not in bad]
    chosen = set()
    for pool in (bad, good):
        pool = list(rng.permutation(pool))
        chosen.update(pool[:round(labelled * len(pool))])
    a = [s for k in keys if k in chosen for s in groups[k]]
    b = [s for k in keys if k not in chosen for s in groups[k]]
    return a, b


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/kolektorsdd"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labelled", type=float, default=0.5, help="share of train parts labelled")
    p.add_argument("--size", default="416x160", help="HxW input of both models")
    p.add_argument("--seg-epochs", type=int, default=4)
    p.add_argument("--cls-epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    from kensa.models.data.layouts import load_dataset
    from kensa.models.registry import create_detector
    from kensa.models.severstal import GatedSegmenter, agreement_pseudo_labels

    size = tuple(int(v) for v in args.size.lower().split("x"))
    dataset = load_dataset(args.data, "yolo", seed=args.seed)
    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    known, hidden = cut_by_group(train, args.labelled, args.seed)
    labels = list(dataset.classes)
    label = labels[0]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"pseudo_label_effect-kolektorsdd-{stamp}.json"
    report: dict = {"date": stamp, "data": str(args.data), "split": dataset.summary()["splits"],
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "labelled": {"photos": len(known),
                                 "defective": sum(bool(s.labels) for s in known)},
                    "unlabelled": {"photos": len(hidden),
                                   "defective": sum(bool(s.labels) for s in hidden)},
                    "load_start": os.getloadavg()}
    common = dict(weights="packaged", labels=labels, input_size=size, batch_size=args.batch,
                  lr=1e-3, seed=args.seed)

    def fit(kind: str, epochs: int, samples: list, name: str):
        det = create_detector(kind, epochs=epochs, patience=epochs, **common)
        t0 = time.perf_counter()
        result = det.fit(samples, val, progress=False)
        report[f"{name}_fit"] = {k: result[k] for k in ("epochs_run", "best_epoch",
                                                         "best_score") if k in result}
        report[f"{name}_fit"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(report[f"{name}_fit"]), flush=True)
        return det

    segmenter = fit("segmenter_lite0", args.seg_epochs, known, "segmenter_labelled")
    classifier = fit("classifier_lite0", args.cls_epochs, known, "classifier_labelled")
    classifier.post.heatmaps = False

    hidden_images = [s.load_image() for s in hidden]
    kept, dropped = agreement_pseudo_labels(classifier, segmenter, hidden_images,
                                            [f"hidden_{k:04d}" for k in range(len(hidden))])
    truth = {f"hidden_{k:04d}": s for k, s in enumerate(hidden)}
    right = sum(bool(s.labels) == bool(truth[s.meta["name"]].labels) for s in kept)
    report["pseudo_labels"] = {"kept": len(kept), "dropped": dropped,
                               "kept_defective": sum(bool(s.labels) for s in kept),
                               "kept_right_verdict": right}
    print("pseudo", json.dumps(report["pseudo_labels"]), flush=True)
    retrained = fit("segmenter_lite0", args.seg_epochs, known + kept, "segmenter_pseudo")

    test_images = [s.load_image() for s in test]
    defective = np.array([bool(s.labels) for s in test])
    idx = resamples(defective)
    scored, report["variants"] = {}, {}
    for name, seg in (("labelled only", segmenter), ("+ pseudo-labels", retrained)):
        gated = GatedSegmenter(classifier, seg)
        maps = seg.probability_maps(test_images)
        s = score(gated, test, test_images, maps, None, False, label)
        scored[name] = s
        row = with_intervals(s["flagged"], s["dice_per_image"], defective, idx)
        if name != "labelled only":
            row["paired_vs_labelled_only"] = paired(s, scored["labelled only"], defective, idx)
        report["variants"][name] = row
        print(name, json.dumps(row), flush=True)
    return finish(report, out, defective)


if __name__ == "__main__":
    raise SystemExit(main())
