"""Effect of seed 003's tiling on a real segmentation set: KolektorSDD (issue 13).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/tiling_effect.py \\
        --data /work/shared/data/kolektorsdd --tiles 3 --tile-size 224x256

Same split and metrics as ``bench/severstal_effect.py`` (kensa's ``yolo`` layout at
``--seed``; test photos only scored). Two Lite0 U-Nets (packaged ImageNet weights, same seed,
epochs and untuned post-processing, pixel threshold 0.5): ``whole`` sees each photo shrunk to
``--size``; ``tiled`` cuts each photo into ``--tiles`` tiles along its long side (dark tiles
dropped, ``models.data.tiling``), trains on tiles at ``--tile-size`` and stitches the tiles'
maps back into one map per photo at inference (``DefectSegmenter`` with ``tiles``). KolektorSDD
photos are ~1260x500: whole at 416x160 is a 3x reduction, three 420x500 tiles at 224x256 a
~1.9x one. Reported: false alarms, misses, dice, dice of the defective photos with 95 %
bootstrap intervals, the paired difference, and ms per photo.
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
from severstal_effect import RESULTS, finish, paired, resamples, score, timed, with_intervals  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    return tuple(int(v) for v in text.lower().split("x"))  # type: ignore[return-value]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/kolektorsdd"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="416x160", help="HxW input of the whole-photo U-Net")
    p.add_argument("--tiles", type=int, default=3)
    p.add_argument("--tile-size", default="224x256", help="HxW input of the tiled U-Net")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    from kensa.models.data.layouts import load_dataset
    from kensa.models.registry import create_detector
    from kensa.models.severstal import GatedSegmenter

    dataset = load_dataset(args.data, "yolo", seed=args.seed)
    train, val, test = (dataset.split(s) for s in ("train", "val", "test"))
    labels = list(dataset.classes)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"tiling_effect-kolektorsdd-{stamp}.json"
    report: dict = {"date": stamp, "data": str(args.data), "split": dataset.summary()["splits"],
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "load_start": os.getloadavg(), "variants": {}}
    test_images = [s.load_image() for s in test]
    defective = np.array([bool(s.labels) for s in test])
    idx = resamples(defective)
    classifier = create_detector("classifier_lite0", weights="packaged", labels=labels)
    scored: dict[str, dict] = {}
    for name, size, tiles in (("whole", _size(args.size), 0),
                              ("tiled", _size(args.tile_size), args.tiles)):
        seg = create_detector("segmenter_lite0", weights="packaged", labels=labels,
                              input_size=size, batch_size=args.batch, lr=1e-3, seed=args.seed,
                              epochs=args.epochs, patience=args.epochs, tiles=tiles)
        t0 = time.perf_counter()
        fit = seg.fit(train, val, progress=False)
        fit_s = round(time.perf_counter() - t0, 1)
        maps = seg.probability_maps(test_images)
        s = score(GatedSegmenter(classifier, seg), test, test_images, maps, None, False,
                  labels[0])
        scored[name] = s
        ms, _ = timed(seg.predict, test_images)
        row = with_intervals(s["flagged"], s["dice_per_image"], defective, idx)
        row.update(fit_wall_seconds=fit_s, best_epoch=fit.get("best_epoch"),
                   ms_per_photo=round(float(ms.mean()), 1), input_size=list(size),
                   tiles=tiles, load=os.getloadavg())
        if name != "whole":
            row["paired_vs_whole"] = paired(s, scored["whole"], defective, idx)
        report["variants"][name] = row
        print(name, json.dumps(row), flush=True)
        out.write_text(json.dumps(report, indent=1))
    return finish(report, out, defective)


if __name__ == "__main__":
    raise SystemExit(main())
