"""A native-resolution PaDiM run of ``bench/anomaly_peers.py`` split across processes.

On a machine shared by many jobs one process gets a tenth of a core; this splits the fit
(PaDiM's per-position sums add up: ``Padim.accumulate`` / ``set_gaussians``) and the scoring
over ``--shards`` processes, then writes the child result files ``anomaly_peers.py report``
reads (same cache, same split, same metrics and bootstrap). The threshold is not calibrated
(image and pixel AUROC do not depend on it).

    python bench/anomaly_peers.py --no-robust --peers "" --ours "padim+native_resolution=true" \\
        --work W   # or any run that wrote W/cache.npz and W/native.npz
    python bench/native_sharded.py W --shards 3 --overrides '{"tile": {"size": 512, "overlap": 64}}'
    python bench/anomaly_peers.py report W
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _detector(overrides: dict, size):
    from kensa.models.registry import create_detector

    return create_detector("padim", weights="packaged", input_size=size, seed=0,
                           native_resolution=True, **overrides)


def fit_shard(work: Path, index: int, shards: int, overrides: dict) -> None:
    import torch
    from anomaly_peers import NATIVE_CACHE, _status_mb, native_images

    size = tuple(int(v) for v in np.load(work / "cache.npz")["train"].shape[1:3])
    images = native_images(work / NATIVE_CACHE, "train")[index::shards]
    detector = _detector(overrides, size)
    started = time.perf_counter()
    total, outer, n = detector.accumulate(images)
    torch.save({"total": total, "outer": outer, "n": n,
                "seconds": time.perf_counter() - started, "peak_rss_mb": _status_mb("VmHWM")},
               work / f"shard-fit-{index}.pt")


def score_shard(work: Path, index: int, shards: int, overrides: dict) -> None:
    import torch
    import torch.nn.functional as F
    from anomaly_peers import NATIVE_CACHE, _status_mb, native_images

    cache = np.load(work / "cache.npz")
    size = tuple(int(v) for v in cache["train"].shape[1:3])
    mask_size = tuple(int(v) for v in cache["eval_masks"].shape[1:3])
    detector = _detector(overrides, size)
    state = torch.load(work / "shard-gaussians.pt")
    detector.model.mean, detector.model.inv_covariance = state["mean"], state["inv_covariance"]
    images = native_images(work / NATIVE_CACHE, "eval")
    picks = list(range(index, len(images), shards))
    started = time.perf_counter()
    scores, maps = detector.raw_scores([images[i] for i in picks])
    ms = (time.perf_counter() - started) * 1000 / max(1, len(picks))
    small = [F.interpolate(torch.from_numpy(m)[None, None], size=mask_size,
                           mode="area")[0, 0].numpy() for m in maps]
    np.savez(work / f"shard-score-{index}.npz", picks=np.array(picks), scores=scores,
             maps=np.stack(small), ms=ms, peak=_status_mb("VmHWM"))


def _run_all(work: Path, stage: str, shards: int, overrides: str) -> None:
    procs = [subprocess.Popen([sys.executable, __file__, str(work), "--stage", stage,
                               "--index", str(i), "--shards", str(shards),
                               "--overrides", overrides],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(shards)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{stage} shards failed: {codes}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--overrides", default="{}", help="padim config overrides (JSON)")
    parser.add_argument("--stage", choices=("fit", "score"))
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    overrides = json.loads(args.overrides)
    if args.stage == "fit":
        fit_shard(args.work, args.index, args.shards, overrides)
        return 0
    if args.stage == "score":
        score_shard(args.work, args.index, args.shards, overrides)
        return 0
    import torch

    started = time.perf_counter()
    _run_all(args.work, "fit", args.shards, args.overrides)
    parts = [torch.load(args.work / f"shard-fit-{i}.pt") for i in range(args.shards)]
    size = tuple(int(v) for v in np.load(args.work / "cache.npz")["train"].shape[1:3])
    detector = _detector(overrides, size)
    report = detector.set_gaussians(sum(p["total"] for p in parts),
                                    sum(p["outer"] for p in parts), sum(p["n"] for p in parts))
    fit_wall = time.perf_counter() - started
    torch.save({"mean": detector.model.mean, "inv_covariance": detector.model.inv_covariance},
               args.work / "shard-gaussians.pt")
    _run_all(args.work, "score", args.shards, args.overrides)
    shards = [np.load(args.work / f"shard-score-{i}.npz") for i in range(args.shards)]
    n = sum(len(s["picks"]) for s in shards)
    scores = np.zeros(n, dtype=np.float64)
    maps = np.zeros((n, *shards[0]["maps"].shape[1:]), dtype=np.float32)
    for s in shards:
        scores[s["picks"]], maps[s["picks"]] = s["scores"], s["maps"]
    spec = "padim+native_resolution=true+" + "+".join(
        f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in overrides.items())
    name = "ours-padim_native_sharded"
    np.savez(args.work / f"{name}.npz", eval_scores=scores, eval_maps=maps)
    model_mb = sum(t.numel() * t.element_size() for t in detector.model.state_dict().values())
    result = {"detector": spec, "shards": args.shards,
              "fit_seconds": fit_wall,
              "fit_cpu_seconds_sum": sum(p["seconds"] for p in parts),
              "peak_rss_fit_mb": max(p["peak_rss_mb"] for p in parts),
              "rss_before_fit_mb": 0.0,
              "peak_rss_mb": max(float(s["peak"]) for s in shards),
              "eval_latency_ms": float(np.mean([float(s["ms"]) for s in shards])),
              "model_mb": model_mb / 1e6, "config": detector.config.model_dump(mode="json"),
              "report": report, "threshold": None,
              "note": "sharded fit and scoring; not calibrated (AUROC needs no threshold)"}
    (args.work / f"{name}.json").write_text(json.dumps(result, default=float))
    print(json.dumps(result, default=float)[:600])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
