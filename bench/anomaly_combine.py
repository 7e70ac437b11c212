"""Image-score aggregation and detector ensembles from finished ``anomaly_peers.py`` runs.

    .venv/bin/python bench/anomaly_combine.py /tmp/nr/low/ours-padim /tmp/nr/low/ours-flow ...

Each argument is a child result (``<work>/<system>-<detector>``, without suffix) whose folder
holds the ``cache.npz`` it was scored on; all must share the same evaluation images.

- **top-k**: the image score as the mean of the k highest pixels of the saved map (on the
  masks' grid) instead of the maximum; k is *chosen on the ``val`` photos* inside the
  evaluation set (the photos the product calibrates on, 79 on KolektorSDD, 10 defective) and
  reported on the other evaluation photos (``rest``: never used to choose anything) and on
  all, beside k = 1.
- **ensemble**: the mean of the detectors' image scores, each put on a good-only scale first:
  ``(score - map_low) / (pixel_threshold - map_low)``, the median and the 0.999 quantile of
  good calibration pixels (no defect is used). Nothing is tuned.

AUROC intervals and paired differences: the bootstrap of ``anomaly_peers.py`` (good and
defective resampled separately, 2000 rounds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from anomaly_peers import RESULTS, _auroc, resamples  # noqa: E402

TOP_K = (1, 4, 16, 64, 256, 1024)


def interval(labels: np.ndarray, scores: np.ndarray, picks) -> dict:
    values = [_auroc(labels[i], scores[i]) for i in picks]
    return {"auroc": round(_auroc(labels, scores), 4),
            "ci95": [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]}


def paired(labels, a, b, picks) -> dict:
    diffs = [_auroc(labels[i], a[i]) - _auroc(labels[i], b[i]) for i in picks]
    return {"difference": round(_auroc(labels, a) - _auroc(labels, b), 4),
            "ci95": [round(float(v), 4) for v in np.percentile(diffs, [2.5, 97.5])]}


def top_k(maps: np.ndarray, k: int) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1)


def val_positions(cache) -> np.ndarray:
    """Which evaluation images are ``val`` photos (found by identical pixels)."""
    keys = {im.tobytes() for im in cache["val"]}
    return np.array([im.tobytes() in keys for im in cache["eval"]])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    cache = np.load(args.runs[0].parent / "cache.npz")
    labels = cache["eval_labels"]
    is_val = val_positions(cache)
    rest = ~is_val
    picks_all = resamples(labels)
    picks_rest = resamples(labels[rest])
    report: dict = {"date": f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
                    "n_eval": len(labels), "n_val": int(is_val.sum()),
                    "n_val_defective": int(labels[is_val].sum()),
                    "n_rest": int(rest.sum()), "n_rest_defective": int(labels[rest].sum()),
                    "runs": {}, "ensembles": {}}
    normalised = {}
    for run in args.runs:
        other = np.load(run.parent / "cache.npz")
        if not np.array_equal(other["eval_labels"], labels):
            raise SystemExit(f"{run} was scored on other images")
        meta = json.loads(run.with_suffix(".json").read_text())
        saved = np.load(run.with_suffix(".npz"))
        scores, maps = saved["eval_scores"], saved["eval_maps"].astype(np.float32)
        name = f"{run.parent.name}/{run.name}"
        by_k = {k: top_k(maps, k) for k in TOP_K}
        val_auroc = {k: _auroc(labels[is_val], s[is_val]) for k, s in by_k.items()}
        best = max(TOP_K, key=lambda k: (round(val_auroc[k], 4), -k))
        row = {"max (as run)": {"all": interval(labels, scores, picks_all),
                                "rest": interval(labels[rest], scores[rest], picks_rest)},
               "val_auroc_by_k": {k: round(v, 4) for k, v in val_auroc.items()},
               "k_chosen_on_val": best,
               "top_k chosen": {"all": interval(labels, by_k[best], picks_all),
                                "rest": interval(labels[rest], by_k[best][rest], picks_rest),
                                "rest_vs_max": paired(labels[rest], by_k[best][rest],
                                                      scores[rest], picks_rest)}}
        post = meta.get("post")
        if post:
            low, high = post["map_low"], post["pixel_threshold"]
            normalised[name] = (scores - low) / max(high - low, 1e-12)
        report["runs"][name] = row
        print(name, json.dumps(row), flush=True)
    names = list(normalised)
    for n in range(2, len(names) + 1):
        for combo in itertools.combinations(names, n):
            mean = np.mean([normalised[c] for c in combo], axis=0)
            best_single = max(combo, key=lambda c: _auroc(labels, normalised[c]))
            row = {"all": interval(labels, mean, picks_all),
                   "rest": interval(labels[rest], mean[rest], picks_rest),
                   "vs_best_member": {"member": best_single,
                                      **paired(labels, mean, normalised[best_single],
                                               picks_all)}}
            report["ensembles"][" + ".join(combo)] = row
            print(" + ".join(combo), json.dumps(row), flush=True)
    out = args.out or RESULTS / f"anomaly_combine-{report['date']}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
