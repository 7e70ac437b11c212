"""Teach a station from 30 good KolektorSDD photos through the API, then inspect unseen parts.

Starts a real ``kensa serve`` on an empty temporary data directory (the demo PatchCore only,
so the start is short), creates a dataset, uploads ``--good`` defect-free photos from
``images/train`` (evenly spread over its parts), starts a train job, waits for it, activates
the version and inspects every photo of ``images/val`` (other parts: KolektorSDD's files run
part by part, 8 photos each, and ``val`` holds the last parts) through the API. Reports the
wall time from the first upload to the version being active, the job's own fit time and the
image AUROC (sklearn) of the activated detector's raw score on the unseen photos.
Writes ``bench/results/teach_kolektor-<detector>.json``. Never stores the data in the repo.

    python bench/teach_kolektor.py [--data /work/shared/data/kolektorsdd] [--detector padim]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sklearn.metrics import roc_auc_score

RESULTS = Path(__file__).parent / "results"
PASSWORD = "bench-teach-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_defective(data: Path, split: str, image: Path) -> bool:
    label = data / "labels" / split / f"{image.stem}.txt"
    return label.is_file() and label.read_text().strip() != ""


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kensa serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"kensa serve not ready after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/kolektorsdd"))
    parser.add_argument("--detector", default="padim", help="a good-only detector kind")
    parser.add_argument("--good", type=int, default=30, help="good training photos to upload")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    train_good = [p for p in sorted((args.data / "images" / "train").glob("*.jpg"))
                  if not is_defective(args.data, "train", p)]
    step = len(train_good) / args.good
    picked = [train_good[int(i * step)] for i in range(args.good)]
    test = sorted((args.data / "images" / "val").glob("*.jpg"))
    truth = [int(is_defective(args.data, "val", p)) for p in test]

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "KENSA_ADMIN_PASSWORD": PASSWORD, "KENSA_DEMO_TASKS": '["anomaly"]',
               "KENSA_DEMO_GOOD_IMAGES": "8",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        log = Path(tmp) / "serve.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "kensa.cli", "serve", "--data-dir",
                                     str(Path(tmp) / "data"), "--port", str(port),
                                     "--no-client"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc, log, args.timeout)
            token = httpx.post(f"{url}/api/v1/auth/token", timeout=30, data={
                "username": "admin", "password": PASSWORD}).json()["access_token"]
            client = httpx.Client(base_url=url, timeout=600,
                                  headers={"Authorization": f"Bearer {token}"})
            started = time.perf_counter()
            dataset = client.post("/api/v1/datasets", json={"name": "kolektor-station"}).json()
            for i in range(0, len(picked), 10):  # ten photos per request, as a tablet would
                answer = client.post(f"/api/v1/datasets/{dataset['id']}/images", files=[
                    ("image", (p.name, p.read_bytes(), "image/jpeg")) for p in picked[i:i + 10]])
                answer.raise_for_status()
            uploaded_s = time.perf_counter() - started
            job = client.post("/api/v1/jobs", json={
                "kind": "train", "dataset": dataset["id"], "detector": args.detector,
                "name": "kolektor", "created_by": "bench"}).json()
            while job["status"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(1)
                job = client.get(f"/api/v1/jobs/{job['id']}").json()
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job['status']}: {job['message']}")
            trained_s = time.perf_counter() - started
            client.post(f"/api/v1/detectors/kolektor/versions/{job['version']}/activate"
                        ).raise_for_status()
            active_s = time.perf_counter() - started
            scores, verdicts, latencies = [], [], []
            for path in test:
                t0 = time.perf_counter()
                record = client.post("/api/v1/inspections", data={"detectors": "kolektor"},
                                     files={"image": (path.name, path.read_bytes(),
                                                      "image/jpeg")}).json()
                latencies.append(time.perf_counter() - t0)
                (run,) = [r for r in record["runs"] if r["detector"] == "kolektor"]
                scores.append(run["anomaly_score"])
                verdicts.append(record["verdict"])
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    good_v = [v for v, t in zip(verdicts, truth, strict=True) if not t]
    bad_v = [v for v, t in zip(verdicts, truth, strict=True) if t]
    result = {
        "command": "python bench/teach_kolektor.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "detector": args.detector,
        "train": f"{args.good} defect-free photos of images/train (parts 1-40), evenly spread",
        "test": f"images/val, unseen parts: {len(test)} photos, {sum(truth)} defective",
        "upload_seconds": round(uploaded_s, 1),
        "upload_to_trained_seconds": round(trained_s, 1),
        "upload_to_active_seconds": round(active_s, 1),
        "job_fit_seconds": job["metrics"].get("fit_seconds"),
        "holdout": {k: job["metrics"].get(k) for k in ("image_auroc", "false_alarm_rate",
                                                        "threshold", "threshold_method")},
        "image_auroc": round(float(roc_auc_score(truth, scores)), 4),
        "good_verdicts": {v: good_v.count(v) for v in ("ok", "review", "defect")},
        "defective_verdicts": {v: bad_v.count(v) for v in ("ok", "review", "defect")},
        "inspect_latency_ms_median": round(1000 * sorted(latencies)[len(latencies) // 2], 1),
        "load_average": os.getloadavg()[0],
        "note": "machine shared with other jobs",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"teach_kolektor-{args.detector}.json").write_text(
        json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
