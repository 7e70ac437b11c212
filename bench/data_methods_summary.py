"""Aggregate ``bench/data_methods.py`` results over seeds (issue 13).

    .venv/bin/python bench/data_methods_summary.py bench/results/data_methods-neu-*.json

Per seed, runs are merged over the given files (the first file holding a run wins; a rerun of
the same run and seed is reported as a reproducibility check). Per method: accuracy and rare
recall per seed and their mean, the paired difference against its baseline (``flips`` for the
recipes, ``minority`` for ``minority+<generator>``) per seed with the 95 % bootstrap interval
over that seed's test images, and pooled over all seeds (test images resampled within each
seed; each seed has its own split, so pooled = 3 x 266 paired test images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROUNDS = 2000


def interval(parts: list[np.ndarray], seed: int = 0) -> list[float]:
    """95 % interval of the mean of ``concat(parts)``, resampling within each part."""
    rng = np.random.default_rng(seed)
    means = [np.concatenate([p[rng.integers(0, len(p), len(p))] for p in parts]).mean()
             for _ in range(ROUNDS)]
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path("bench/results/data_methods-summary.json"))
    args = p.parse_args()
    from kensa.models.data.layouts import load_dataset

    runs: dict[int, dict[str, dict]] = {}
    reruns, sources, rare_of = [], {}, {}
    for path in args.files:
        report = json.loads(path.read_text())
        if "runs" not in report or "seed" not in report.get("args", {}):
            continue
        seed = int(report["args"]["seed"])
        rare_of[seed] = (report["data"], report["args"]["rare"])
        for r in report["runs"]:
            if r["run"] in runs.setdefault(seed, {}):
                first = runs[seed][r["run"]]
                reruns.append({"seed": seed, "run": r["run"], "accuracy_first": first["accuracy"],
                               "accuracy_rerun": r["accuracy"],
                               "identical": first["correct"] == r["correct"]})
                continue
            runs[seed][r["run"]] = r
            sources.setdefault(seed, []).append(path.name)
    masks = {}
    for seed, (data, rare) in rare_of.items():
        test = load_dataset(data, "neu", seed=seed).split("test")
        masks[seed] = np.array([s.labels[0] == rare for s in test])
    names = sorted({n for r in runs.values() for n in r},
                   key=lambda n: (n.startswith("minority"), n != "flips", n != "minority", n))
    table = []
    for name in names:
        seeds = sorted(s for s in runs if name in runs[s])
        row = {"method": name, "seeds": seeds,
               "accuracy": [runs[s][name]["accuracy"] for s in seeds],
               "rare_recall": [runs[s][name]["rare_recall"] for s in seeds]}
        row["accuracy_mean"] = float(np.mean(row["accuracy"]))
        row["rare_recall_mean"] = float(np.mean(row["rare_recall"]))
        base = "minority" if name.startswith("minority+") else "flips"
        if name != base:
            both = [s for s in seeds if base in runs[s]]
            row["baseline"], row["paired"] = base, {}
            for metric in ("accuracy", "rare_recall"):
                parts = []
                for s in both:
                    diff = (np.array(runs[s][name]["correct"])
                            - np.array(runs[s][base]["correct"]))
                    parts.append(diff[masks[s]] if metric == "rare_recall" else diff)
                row["paired"][metric] = {
                    "per_seed": [{"seed": s, "difference": float(d.mean()),
                                  "ci95": interval([d])} for s, d in zip(both, parts,
                                                                           strict=True)],
                    "pooled": {"difference": float(np.concatenate(parts).mean()),
                               "ci95": interval(parts)}}
        table.append(row)
    summary = {"files": [str(f) for f in args.files], "sources": sources, "reruns": reruns,
               "n_rare_test": {s: int(m.sum()) for s, m in masks.items()}, "table": table}
    args.out.write_text(json.dumps(summary, indent=1))
    for row in table:
        line = (f"{row['method']:16s} acc {' '.join(f'{v:.3f}' for v in row['accuracy'])} "
                f"(mean {row['accuracy_mean']:.3f})  rare "
                f"{' '.join(f'{v:.3f}' for v in row['rare_recall'])} "
                f"(mean {row['rare_recall_mean']:.3f})")
        for metric, block in row.get("paired", {}).items():
            seeds = "; ".join(f"s{d['seed']} {d['difference']:+.3f} [{d['ci95'][0]:+.3f}, "
                              f"{d['ci95'][1]:+.3f}]" for d in block["per_seed"])
            pooled = block["pooled"]
            line += (f"\n    {metric} vs {row['baseline']}: {seeds}; pooled "
                     f"{pooled['difference']:+.3f} [{pooled['ci95'][0]:+.3f}, "
                     f"{pooled['ci95'][1]:+.3f}]")
        print(line)
    for r in reruns:
        print("rerun", r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
