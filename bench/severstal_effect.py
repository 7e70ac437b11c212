"""The Severstal recipe's effect on a real segmentation set with empty photos (issue 13).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/severstal_effect.py \\
        --data /work/shared/data/kolektorsdd

KolektorSDD (1 class, ~87 % of the photos defect-free), kensa's ``yolo`` layout with its own
split at ``--seed``: the folder's ``train``/``val`` with ``test`` carved from ``train`` by group
(train 272 / val 79 / test 48 at seed 0). An EfficientNet-Lite0 classifier and a Lite0 U-Net
(packaged ImageNet weights) are trained on ``train`` with early stopping on ``val``
(``DefectClassifier.fit`` / ``DefectSegmenter.fit``, as ``kensa train`` does). Everything that
is tuned is tuned on ``val``; the test photos are only scored. Cumulative variants:

- ``alone``: the segmenter with untuned post-processing (pixel threshold 0.5, no area filters);
- ``+gate``: ``GatedSegmenter`` with ``tune_gate`` on val (same post-processing);
- ``+gate+post``: per-class pixel threshold / minimum component / minimum area tuned on val
  (``tune_postprocess``), the gate re-tuned on val for it;
- ``+gate+post+tta``: the same thresholds with flip TTA on both models;
- ``+post`` (no gate) beside them, to separate the two.

Metrics on the test photos, from the mask at the tuned threshold (resized to the photo):
false alarms (empty photos with a predicted mask), misses (defective photos without one),
mean Kaggle dice (empty-empty = 1) and dice over the defective photos; 95 % bootstrap
intervals resampling empty and defective photos separately (2000 rounds), paired
differences against ``alone`` on the same resamples. ms/photo: ``predict`` one photo at a time
(the product path), so the gate's saving on empty photos is in it. Models are not kept.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ROUNDS = 2000


def resamples(defective: np.ndarray, rounds: int = ROUNDS, seed: int = 0) -> np.ndarray:
    """Index arrays resampling empty and defective photos separately (counts kept)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(defective), np.flatnonzero(~defective)
    return np.array([np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
                     for _ in range(rounds)])


def metrics(flagged: np.ndarray, dice: np.ndarray, defective: np.ndarray) -> dict:
    return {"false_alarm_rate": float(flagged[~defective].mean()),
            "false_alarms": int(flagged[~defective].sum()),
            "miss_rate": float((~flagged[defective]).mean()),
            "misses": int((~flagged[defective]).sum()),
            "dice": float(dice.mean()), "dice_defective": float(dice[defective].mean())}


def with_intervals(flagged: np.ndarray, dice: np.ndarray, defective: np.ndarray,
                   idx: np.ndarray) -> dict:
    out = metrics(flagged, dice, defective)
    boot = [metrics(flagged[i], dice[i], defective[i]) for i in idx]
    for key in ("false_alarm_rate", "miss_rate", "dice", "dice_defective"):
        out[f"{key}_ci95"] = [float(v) for v in np.percentile([b[key] for b in boot],
                                                              [2.5, 97.5])]
    return out


def paired(a: dict, b: dict, defective: np.ndarray, idx: np.ndarray) -> dict:
    """``a - b`` per metric with a 95 % interval over the same resamples."""
    out = {}
    for key in ("false_alarm_rate", "miss_rate", "dice", "dice_defective"):
        ma = metrics(a["flagged"], a["dice_per_image"], defective)[key]
        mb = metrics(b["flagged"], b["dice_per_image"], defective)[key]
        diffs = [metrics(a["flagged"][i], a["dice_per_image"][i], defective[i])[key]
                 - metrics(b["flagged"][i], b["dice_per_image"][i], defective[i])[key]
                 for i in idx]
        out[key] = {"difference": float(ma - mb),
                    "ci95": [float(v) for v in np.percentile(diffs, [2.5, 97.5])]}
    return out


def score(gated, samples, images, maps, probs, use_gate: bool, label: str) -> dict:
    """Per photo: predicted mask non-empty (at the tuned threshold) and Kaggle dice."""
    from kensa.models.imaging import resize_map

    segmenter = gated.segmenter
    c, col = segmenter.labels.index(label), gated.classifier.labels.index(label)
    flagged, dice = [], []
    for k, (sample, image, prob) in enumerate(zip(samples, images, maps, strict=True)):
        size = image.shape[:2]
        gt = sample.load_masks(*size).get(label, np.zeros(size, bool))
        if use_gate and float(probs[k][col]) < gated.gate_threshold(label):
            pred = np.zeros(size, bool)
        else:
            pred = segmenter.masks_from_probs(np.clip(resize_map(prob[c], size), 0, 1), label)
        total = pred.sum() + gt.sum()
        flagged.append(bool(pred.any()))
        dice.append(1.0 if total == 0 else float(2 * (pred & gt).sum() / total))
    return {"flagged": np.array(flagged), "dice_per_image": np.array(dice)}


def timed(predict, images) -> tuple[np.ndarray, list[str]]:
    """ms of ``predict`` per photo, called one photo at a time (the product path); verdicts."""
    times, verdicts = [], []
    for image in images:
        t0 = time.perf_counter()
        verdicts.append(predict(image).verdict.value)
        times.append((time.perf_counter() - t0) * 1000)
    return np.array(times), verdicts


def finish(report: dict, out: Path, defective: np.ndarray) -> int:
    """Write the run's report with the test counts and the load at its end."""
    report["n_test"], report["n_test_defective"] = len(defective), int(defective.sum())
    report["load_end"] = os.getloadavg()
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/kolektorsdd"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="416x160", help="HxW input of both models")
    p.add_argument("--seg-epochs", type=int, default=4)
    p.add_argument("--cls-epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    from kensa.models.data.layouts import load_dataset
    from kensa.models.registry import create_detector
    from kensa.models.severstal import GatedSegmenter, tune_gate

    size = tuple(int(v) for v in args.size.lower().split("x"))
    dataset = load_dataset(args.data, "yolo", seed=args.seed)
    if dataset.group_leaks():
        raise SystemExit(f"{dataset.group_leaks()} groups straddle splits")
    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    labels = list(dataset.classes)
    label = labels[0]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"severstal_effect-kolektorsdd-{stamp}.json"
    report: dict = {"date": stamp, "data": str(args.data), "split": dataset.summary()["splits"],
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "load_start": os.getloadavg(),
                    "machine": "2 CPU cores shared with other jobs, 1 thread"}
    common = dict(weights="packaged", labels=labels, input_size=size, batch_size=args.batch,
                  lr=1e-3, seed=args.seed)
    segmenter = create_detector("segmenter_lite0", epochs=args.seg_epochs,
                                patience=args.seg_epochs, **common)
    classifier = create_detector("classifier_lite0", epochs=args.cls_epochs,
                                 patience=args.cls_epochs, **common)
    classifier.post.heatmaps = False
    for name, det in (("segmenter", segmenter), ("classifier", classifier)):
        t0 = time.perf_counter()
        fit = det.fit(train, val, progress=False)
        report[f"{name}_fit"] = {k: fit[k] for k in ("epochs_run", "best_epoch", "best_score",
                                                      "seconds") if k in fit}
        report[f"{name}_fit"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(report[f"{name}_fit"]), flush=True)
    tuned_post = {k: v.model_copy() for k, v in segmenter.post.classes.items()}
    report["tuned_post"] = {k: v.model_dump() for k, v in tuned_post.items()}

    test_images = [s.load_image() for s in test]
    defective = np.array([bool(s.labels) for s in test])
    idx = resamples(defective)
    maps = segmenter.probability_maps(test_images)
    probs = classifier.probabilities(test_images)
    segmenter.post.tta_flips = classifier.post.tta_flips = True
    maps_tta = segmenter.probability_maps(test_images)
    probs_tta = classifier.probabilities(test_images)
    segmenter.post.tta_flips = classifier.post.tta_flips = False
    gated = GatedSegmenter(classifier, segmenter)

    gates: dict[str, dict[str, float]] = {}

    def configure(post: bool, gate: bool, tta: bool) -> None:
        segmenter.post.classes = dict(tuned_post) if post else {}
        segmenter.post.gate = {}
        key = f"post={post}"
        if gate and key not in gates:  # tuned on val, without TTA, for this post-processing
            gates[key] = tune_gate(classifier, segmenter, val)
        segmenter.post.gate = dict(gates[key]) if gate else {}
        segmenter.post.tta_flips = classifier.post.tta_flips = tta

    variants = {"alone": (False, False, False), "+post": (True, False, False),
                "+gate": (False, True, False), "+gate+post": (True, True, False),
                "+gate+post+tta": (True, True, True)}
    scored: dict[str, dict] = {}
    report["variants"] = {}
    for name, (post, gate, tta) in variants.items():
        configure(post, gate, tta)
        s = score(gated, test, test_images, maps_tta if tta else maps,
                  probs_tta if tta else probs, gate, label)
        scored[name] = s
        ms, verdicts = timed(gated.predict if gate else segmenter.predict, test_images)
        row = with_intervals(s["flagged"], s["dice_per_image"], defective, idx)
        verdicts = np.array(verdicts)
        row.update(ms_per_photo=round(float(ms.mean()), 1),
                   ms_per_empty_photo=round(float(ms[~defective].mean()), 1),
                   ms_per_defective_photo=round(float(ms[defective].mean()), 1),
                   gate=dict(segmenter.post.gate),
                   empty_flagged_incl_review=int((verdicts[~defective] != "ok").sum()),
                   defective_flagged_incl_review=int((verdicts[defective] != "ok").sum()),
                   load=os.getloadavg())
        if name != "alone":
            row["paired_vs_alone"] = paired(s, scored["alone"], defective, idx)
        report["variants"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "paired_vs_alone"}),
              flush=True)
        out.write_text(json.dumps(report, indent=1))
    report["gates"] = gates
    return finish(report, out, defective)


if __name__ == "__main__":
    raise SystemExit(main())
