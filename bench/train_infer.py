"""Training throughput and inference latency of the supervised detectors on 256x1600 strips.

    python bench/train_infer.py [--kinds classifier segmenter ...] [--size 256x1600]
                                [--batch 2] [--steps 3] [--runs 5] [--threads N]

Training: images/s over ``--steps`` optimisation steps of the detector's own loss after one
warm-up step. Inference: ``detector.predict`` on one synthetic strip (pre- and post-processing
included; the classifier's time includes Grad-CAM for the labels it reports), median and p90
of ``--runs`` calls after one warm-up. Writes JSON to bench/results/train_infer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kensa.models.data.synthetic import DEFECT_CLASSES, SteelStripGenerator
from kensa.models.device import default_device
from kensa.models.registry import create_detector, get_spec
from kensa.models.types import Task

RESULTS = Path(__file__).resolve().parent / "results"
RANDOM_INIT = {"classifier", "segmenter", "classifier_inception_v3"}  # no offline weights


def _loss(detector, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = detector.model(x)
    if detector.task == Task.CLASSIFY:
        return torch.nn.functional.binary_cross_entropy_with_logits(out, y)
    import segmentation_models_pytorch as smp

    return (torch.nn.functional.binary_cross_entropy_with_logits(out, y)
            + smp.losses.DiceLoss(mode="multilabel")(out, y))


def bench_kind(kind: str, size: tuple[int, int], batch: int, steps: int, runs: int) -> dict:
    weights = "none" if kind in RANDOM_INIT else "packaged"
    detector = create_detector(kind, weights=weights, input_size=size,
                               labels=list(DEFECT_CLASSES))
    generator = SteelStripGenerator(size=size, seed=0)
    strips = [generator.defective(i) for i in range(batch)]
    from kensa.models.imaging import to_tensor

    x = to_tensor([s.image for s in strips], size).to(detector.device)
    if detector.task == Task.CLASSIFY:
        y = torch.tensor([[lab in s.labels for lab in DEFECT_CLASSES] for s in strips],
                         dtype=torch.float32)
    else:
        y = torch.stack([torch.from_numpy(np.stack([s.masks.get(lab, np.zeros(size, bool))
                                                    for lab in DEFECT_CLASSES])).float()
                         for s in strips])
    y = y.to(detector.device)
    model = detector.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    timings = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        _loss(detector, x, y).backward()
        optimizer.step()
        if step:  # the first step warms up
            timings.append(time.perf_counter() - t0)
    model.eval()
    image = strips[0].image
    detector.predict(image)
    latencies = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detection = detector.predict(image)
        latencies.append((time.perf_counter() - t0) * 1000)
    params = sum(p.numel() for p in model.parameters())
    return {
        "kind": kind, "arch": getattr(detector.config, "arch", None)
        or getattr(detector.config, "encoder", None), "weights": weights,
        "params_m": round(params / 1e6, 2), "input_size": list(size), "batch": batch,
        "train_images_per_s": round(batch * steps / sum(timings), 3),
        "train_step_s": round(statistics.median(timings), 3),
        "infer_ms_median": round(statistics.median(latencies), 1),
        "infer_ms_p90": round(float(np.percentile(latencies, 90)), 1),
        "infer_timings_ms": {k: round(v, 1) for k, v in detection.timings_ms.items()},
        "description": get_spec(kind).description,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+",
                        default=["classifier", "classifier_lite0", "segmenter",
                                 "segmenter_lite0"])
    parser.add_argument("--size", default="256x1600")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "train_infer.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    results = []
    for kind in args.kinds:
        row = bench_kind(kind, (height, width), args.batch, args.steps, args.runs)
        print(json.dumps(row))
        results.append(row)
    payload = {
        "benchmark": "train_infer", "created_at": datetime.now(UTC).isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "device": str(default_device()),
                    "load_avg_1m": os.getloadavg()[0]},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
