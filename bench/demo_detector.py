"""How long is the first start with no trained model, and how good is the demo pipeline?

Starts a real ``kensa serve`` on an empty temporary data directory and times it until
``/readyz`` says ready (the demo PatchCore fitted) and until the demo classifier and U-Net,
fitted in the background, are listed. Then inspects unseen synthetic strips (another seed)
through the API: image AUROC of the anomaly score, verdicts, and how often a defective strip
comes back with a label, a mask, a heatmap and Grad-CAM together.
Writes ``bench/results/demo_detector.json``.

    python bench/demo_detector.py [--n 10] [--seed 99]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from sklearn.metrics import roc_auc_score

from kensa.backend.services.demo import DEMO_STRIP_SIZE, RECIPES
from kensa.models.data.synthetic import SteelStripGenerator

RESULTS = Path(__file__).parent / "results"
PASSWORD = "bench-demo-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png(image) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="good and defective test strips each")
    parser.add_argument("--seed", type=int, default=99, help="test strips' seed (fit uses 0)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "KENSA_ADMIN_PASSWORD": PASSWORD,
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        log = Path(tmp) / "serve.log"
        started = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "kensa.cli", "serve", "--data-dir",
                                     str(Path(tmp) / "data"), "--port", str(port),
                                     "--no-client"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            ready_s = all_s = None
            wanted = {r.name for r in RECIPES.values()}
            while time.perf_counter() - started < args.timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"kensa serve exited:\n{log.read_text()[-3000:]}")
                try:
                    body = httpx.get(f"{url}/readyz", timeout=5).json()
                except (httpx.HTTPError, ValueError):
                    body = {}
                if body.get("status") == "ready":
                    ready_s = ready_s or time.perf_counter() - started
                    if wanted <= set(body["detectors"]):
                        all_s = time.perf_counter() - started
                        break
                time.sleep(1)
            if all_s is None:
                raise SystemExit(f"not every demo detector after {args.timeout}s")
            token = httpx.post(f"{url}/api/v1/auth/token", timeout=30, data={
                "username": "admin", "password": PASSWORD}).json()["access_token"]
            client = httpx.Client(base_url=url, timeout=300,
                                  headers={"Authorization": f"Bearer {token}"})
            detectors = client.get("/api/v1/detectors").json()
            test = SteelStripGenerator(size=DEMO_STRIP_SIZE, seed=args.seed)
            strips = [test.good(i) for i in range(args.n)] + \
                [test.defective(i) for i in range(args.n)]
            records = []
            for strip in strips:
                record = client.post("/api/v1/inspections",
                                     files={"image": ("s.png", png(strip.image), "image/png")}
                                     ).json()
                layers = {e["kind"] for e in record.get("evidence", [])}
                records.append({
                    "truth": list(strip.labels), "verdict": record["verdict"],
                    "anomaly_score": record["anomaly_score"],
                    "labels": sorted({f["label"] for f in record["findings"]
                                      if f["detector"] == RECIPES["classify"].name}),
                    "masks": sum(1 for f in record["findings"] if f.get("mask_url")),
                    "layers": sorted(layers)})
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    good, bad = records[: args.n], records[args.n:]
    full = [r for r in bad if r["labels"] and r["masks"]
            and {"heatmap", "gradcam"} <= set(r["layers"])]
    result = {
        "command": "python bench/demo_detector.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ready_seconds": round(ready_s, 1),
        "all_demo_detectors_seconds": round(all_s, 1),
        "detectors": [{k: d.get(k) for k in ("name", "kind", "task", "demo", "weights")}
                      for d in detectors],
        "recipes": {r.name: {"kind": r.kind, "config": {k: list(v) if isinstance(v, tuple)
                                                          else v for k, v in r.config.items()}}
                    for r in RECIPES.values()},
        "test": f"{args.n} good + {args.n} defective unseen synthetic strips, seed {args.seed}",
        "image_auroc_anomaly": round(float(roc_auc_score(
            [0] * len(good) + [1] * len(bad),
            [r["anomaly_score"] for r in good + bad])), 4),
        "good_verdicts": {v: [r["verdict"] for r in good].count(v)
                          for v in ("ok", "review", "defect")},
        "defective_verdicts": {v: [r["verdict"] for r in bad].count(v)
                               for v in ("ok", "review", "defect")},
        "defective_with_label_mask_heatmap_gradcam": len(full),
        "defective_label_correct": sum(bool(set(r["labels"]) & set(r["truth"])) for r in bad),
        "good_with_a_label": sum(bool(r["labels"]) for r in good),
        "good_with_a_mask": sum(bool(r["masks"]) for r in good),
        "records": records,
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo_detector.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "records"}, indent=2))


if __name__ == "__main__":
    main()
