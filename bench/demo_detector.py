"""How good is the demo detector the service fits when it has no trained model?

Fits the service's own demo recipe (``backend.services.inference.fit_demo_detector``) and scores
unseen synthetic strips (another seed): fit time, memory bank, image AUROC, verdict counts.
Writes ``bench/results/demo_detector.json``.

    python bench/demo_detector.py [--n 15] [--seed 99]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

from kensa.backend.services.inference import DEMO_CONFIG, DEMO_STRIP_SIZE, fit_demo_detector
from kensa.models import load_detector
from kensa.models.data.synthetic import SteelStripGenerator

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=15, help="good and defective test strips each")
    parser.add_argument("--seed", type=int, default=99, help="test strips' seed (fit uses 0)")
    parser.add_argument("--fit-images", type=int, default=40)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as model_dir:
        started = time.perf_counter()
        directory = fit_demo_detector(Path(model_dir), n_good=args.fit_images)
        fit_seconds = time.perf_counter() - started
        detector = load_detector(directory)

    test = SteelStripGenerator(size=DEMO_STRIP_SIZE, seed=args.seed)
    good = [test.good(i).image for i in range(args.n)]
    bad = [test.defective(i).image for i in range(args.n)]
    detections = detector.predict_batch(good + bad)
    scores = [d.anomaly_score for d in detections]
    verdicts = [d.verdict.value for d in detections]
    result = {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in DEMO_CONFIG.items()},
        "fit_images": args.fit_images,
        "fit_seconds": round(fit_seconds, 1),
        "memory_bank": int(detector.model.memory_bank.shape[0]),
        "test": f"{args.n} good + {args.n} defective synthetic strips, seed {args.seed}",
        "image_auroc": round(float(roc_auc_score([0] * args.n + [1] * args.n, scores)), 4),
        "good_verdicts": {v: verdicts[: args.n].count(v) for v in ("ok", "review", "defect")},
        "defective_verdicts": {v: verdicts[args.n:].count(v) for v in ("ok", "review", "defect")},
        "review_band": list(detector.post.review_band),
        "load_average": os.getloadavg()[0],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo_detector.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
