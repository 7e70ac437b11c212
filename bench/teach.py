"""Fast teach: fit time and peak memory of PatchCore and PaDiM on 10, 30, 100, 300 good
256x1600 synthetic strips (default configs, CPU). Writes bench/results/teach.json.

    OMP_NUM_THREADS=1 .venv/bin/python bench/teach.py [--sizes 10 30 100 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "teach.json"


def one(kind: str, n: int) -> dict:
    """Fit in this process (the caller starts one per measurement, so the RSS peak is its)."""
    from kensa.models.data.synthetic import SteelStripGenerator
    from kensa.models.registry import create_detector
    from kensa.models.training.anomaly import auto_input_size

    samples = SteelStripGenerator(size=(256, 1600), seed=0).samples(n, 0)
    for s in samples:
        s.load_image()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    detector = create_detector(kind, input_size=auto_input_size(256, 1600))
    started = time.perf_counter()
    report = detector.fit(samples)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "n_good": n, "input_size": list(detector.config.input_size),
            "fit_seconds": round(seconds, 2), "fit_good_seconds": report.get("fit_seconds"),
            "peak_rss_mb": round(peak / 1024, 1),
            "rss_growth_during_fit_mb": round((peak - base_rss) / 1024, 1),
            "threshold_method": report.get("threshold_method")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100, 300])
    parser.add_argument("--kinds", nargs="+", default=["patchcore", "padim"])
    parser.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    rows = []
    for kind in args.kinds:
        for n in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--one", kind, str(n)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "python": platform.python_version()},
        "strip": [256, 1600], "results": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
