"""Per 256x1600 photo: eager torch vs ONNX Runtime vs OpenVINO for the served pipelines.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/pipeline.py --n 8 [--parity 1 1]
        [--pipelines lite0_pair b3_pair patchcore padim]

Pipelines: lite0 pair (classifier_lite0 + segmenter_lite0, untrained weights: speed only), B3
pair (classifier + segmenter, ``weights=none``), PatchCore and PaDiM (fit on 6 synthetic good
strips). Each detector is exported with ``kensa.models.export`` (traced at batch 1 with a
dynamic batch axis, OpenVINO converted from that ONNX graph; parity checked on ``--parity``
good/defective strips); each (pipeline, runtime) runs in its own process through
``load_detector`` so its peak RSS (VmHWM) is its own. A photo's time is every detector of the
pipeline on it, Grad-CAM of the predicted labels included. Writes ``bench/results/pipeline.json``.

anomalib's exported PatchCore is not measured here yet: the report says so and why.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = (256, 1600)
PIPELINES = {
    "lite0_pair": [("classifier_lite0", {}), ("segmenter_lite0", {})],
    "b3_pair": [("classifier", {}), ("segmenter", {})],
    "patchcore": [("patchcore", {"max_bank": 2048})],
    "padim": [("padim", {"grid_stride": 16})],
}
RUNTIMES = {"torch": None, "onnxruntime": "onnx", "openvino": "openvino"}


def _build(root: Path, pipelines: list[str], parity_counts: tuple[int, int]
           ) -> dict[str, dict[str, list[str]]]:
    from kensa.models.artifacts import save
    from kensa.models.data.synthetic import SteelStripGenerator
    from kensa.models.registry import create_detector, get_spec
    from kensa.models.training.export import export_artifact

    good = SteelStripGenerator(size=SIZE, seed=0).samples(6, 0)
    dirs: dict[str, dict[str, list[str]]] = {}
    parity: dict[str, dict] = {}
    for pipeline in pipelines:
        members = PIPELINES[pipeline]
        dirs[pipeline] = {r: [] for r in RUNTIMES}
        for kind, extra in members:
            detector = create_detector(kind, weights="none", input_size=SIZE, **extra)
            if get_spec(kind).task.value == "anomaly":
                detector.fit(good)
            else:
                detector.set_threshold(0.5)
            source = save(detector, root / kind)
            dirs[pipeline]["torch"].append(str(source))
            for runtime, fmt in RUNTIMES.items():
                if fmt:
                    t0 = time.perf_counter()
                    manifest = export_artifact(source, fmt, root / f"{kind}-{fmt}",
                                               parity=parity_counts)
                    parity[f"{kind}-{fmt}"] = {**manifest["parity"], "export_s": round(
                        time.perf_counter() - t0, 1)}
                    print(f"exported {kind} -> {fmt} in {time.perf_counter() - t0:.0f} s, "
                          f"parity {'passed' if manifest['parity']['passed'] else 'FAILED'}",
                          flush=True)
                    dirs[pipeline][runtime].append(str(root / f"{kind}-{fmt}"))
    return {"dirs": dirs, "parity": parity}  # type: ignore[return-value]


def _child(dirs: list[str], n: int) -> dict:
    from kensa.models.artifacts import load_detector
    from kensa.models.data.synthetic import SteelStripGenerator

    detectors = [load_detector(d, device="cpu") for d in dirs]
    images = [s.load_image() for s in SteelStripGenerator(size=SIZE, seed=99).samples(n // 2,
                                                                                     n - n // 2)]
    for d in detectors:
        d.predict(images[0])  # warm-up
    times = []
    for image in images:
        t0 = time.perf_counter()
        for d in detectors:
            d.predict(image)
        times.append((time.perf_counter() - t0) * 1000)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return {"runtimes": [d.runtime for d in detectors], "n": n,
            "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "peak_rss_mb": round(hwm / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--child", nargs="*")
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--parity", type=int, nargs=2, default=(2, 3),
                        metavar=("GOOD", "DEFECTIVE"), help="strips of the export parity check")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "pipeline.json")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.n)))
        return 0
    import torch

    anomalib = {"skipped": "anomalib is not installed in this venv (the .[peers] extra needs "
                           "its own venv with a pinned torch, see bench/README.md), and its "
                           "export path is not wired into this script yet"}
    results: dict[str, dict] = {}
    parity: dict[str, dict] = {}
    target = args.out
    for pipeline in args.pipelines:  # built, measured and written one at a time
        with tempfile.TemporaryDirectory() as tmp:
            built = _build(Path(tmp), [pipeline], tuple(args.parity))
            parity.update(built["parity"])
            results[pipeline] = {}
            for runtime, dirs in built["dirs"][pipeline].items():
                out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--child",
                                      *dirs], capture_output=True, text=True, check=True)
                results[pipeline][runtime] = json.loads(out.stdout.strip().splitlines()[-1])
        base = results[pipeline]["torch"]["p50_ms"]
        for runtime in RUNTIMES:
            results[pipeline][runtime]["p50_speedup_vs_torch"] = round(
                base / results[pipeline][runtime]["p50_ms"], 2)
        print(pipeline, {r: (round(v["p50_ms"]), round(v["p95_ms"]), v["peak_rss_mb"],
                             v["p50_speedup_vs_torch"])
                         for r, v in results[pipeline].items()}, flush=True)
        report = {"photo": list(SIZE), "results": results, "parity": parity,
                  "anomalib_patchcore": anomalib, "machine": "2 CPU cores shared with other jobs",
                  "command": " ".join(sys.argv), "torch_threads": torch.get_num_threads(),
                  "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                  "weights": "untrained (weights=none): speed only, not accuracy"}
        target.write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(f"wrote {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
