"""Cost in ms per photo of the Severstal recipe's options on synthetic 256x1600 strips.

    OMP_NUM_THREADS=1 .venv/bin/python bench/steel_recipe.py

EfficientNet-Lite0 classifier and U-Net (random init: cost does not depend on the weights) at
a 128x800 input; the gate closed (classifier only) and open (classifier + segmenter), flip
TTA (4 passes), and seed 003's 6 tiles (128x128 input each). One thread; the machine is
shared with other jobs, so the figures are upper bounds. JSON in ``bench/results/``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def per_image_ms(fn, images, reps: int) -> float:
    fn(images[:1])  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        for image in images:
            fn([image])
    return (time.perf_counter() - t0) * 1000 / (reps * len(images))


def main() -> int:
    from kensa.models.data.synthetic import SteelStripGenerator
    from kensa.models.registry import create_detector
    from kensa.models.severstal import GatedSegmenter

    torch.set_num_threads(1)
    labels = ["pitted_surface", "crazing", "scratches", "patches"]
    gen = SteelStripGenerator((256, 1600), seed=0)
    images = [gen.defective(i).image for i in range(3)]
    clf = create_detector("classifier_lite0", weights="none", labels=labels,
                          input_size=(128, 800))
    clf.post.heatmaps = False
    seg = create_detector("segmenter_lite0", weights="none", labels=labels,
                          input_size=(128, 800))
    tiled = create_detector("segmenter_lite0", weights="none", labels=labels,
                            input_size=(128, 128), tiles=6)
    gated = GatedSegmenter(clf, seg)
    reps = 2
    rows = {}
    rows["segmenter"] = per_image_ms(seg.predict_batch, images, reps)
    seg.post.tta_flips = True
    rows["segmenter + flip TTA"] = per_image_ms(seg.predict_batch, images, reps)
    seg.post.tta_flips = False
    clf.set_threshold(0.999999)
    rows["gate closed (classifier only)"] = per_image_ms(gated.predict_batch, images, reps)
    clf.set_threshold(1e-30)
    rows["gate open (classifier + segmenter)"] = per_image_ms(gated.predict_batch, images,
                                                              reps)
    rows["segmenter, 6 tiles"] = per_image_ms(tiled.predict_batch, images, reps)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "images": "3 synthetic 256x1600 strips", "reps": reps,
              "machine": "2 CPU cores shared with other jobs, 1 thread",
              "ms_per_image": {k: round(v, 1) for k, v in rows.items()}}
    out = ROOT / "bench" / "results" / "steel_recipe.json"
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
