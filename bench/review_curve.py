"""A measured learning curve of the review loop on KolektorSDD, through the API.

Teach PatchCore from a few good images (a dataset and a train job), activate it; then each
round: inspect the next photos of the stream (``images/train``), a scripted reviewer answers
every open queued inspection from the ground truth (``ok``, or ``defect`` with the label), a
``retrain_from_reviews`` job learns the confirmed good photos, its version is activated. After
the teach and after every round the active detector is scored on the held-out ``images/val``
(never inspected, never learnt): image AUROC, false-alarm and miss rates at its threshold.
Writes bench/results/review_curve.json and docs/review_curve.png.

    OMP_NUM_THREADS=1 .venv/bin/python bench/review_curve.py [--teach 5 --rounds 4 --per-round 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

DATA = Path("/work/shared/data/kolektorsdd")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "review_curve.json"
PLOT = ROOT / "docs" / "review_curve.png"
API = "/api/v1"
PASSWORD = "bench-password-1"


def split(folder: str) -> list[tuple[Path, bool]]:
    """(image, defective) pairs of a KolektorSDD folder, in file order."""
    out = []
    for image in sorted((DATA / "images" / folder).glob("*.jpg")):
        label = DATA / "labels" / folder / f"{image.stem}.txt"
        out.append((image, label.is_file() and label.stat().st_size > 0))
    return out


def held_out_figures(detector, test: list[tuple[Path, bool]]) -> dict:
    images = [np.asarray(Image.open(p).convert("RGB")) for p, _ in test]
    truth = np.array([d for _, d in test])
    detections = detector.predict_batch(images)
    scores = np.array([d.anomaly_score for d in detections])
    flagged = np.array([d.verdict.value != "ok" for d in detections])
    return {"image_auroc": round(float(roc_auc_score(truth, scores)), 4),
            "false_alarm_rate": round(float(flagged[~truth].mean()), 4),
            "miss_rate": round(float((~flagged[truth]).mean()), 4),
            "threshold": detector.post.threshold, "version": detector.version}


async def wait_job(http: httpx.AsyncClient, job_id: str) -> dict:
    while True:
        job = (await http.get(f"{API}/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job['kind']} {job['status']}: {job['message']}")
            return job
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> dict:
    from kensa.backend.config import Settings
    from kensa.backend.main import create_app

    pool = split("train")
    test = split("val")
    rng = np.random.default_rng(args.seed)
    order = [pool[i] for i in rng.permutation(len(pool))]
    teach = [item for item in order if not item[1]][:args.teach]
    stream = [item for item in order if item not in teach]
    tmp = Path(tempfile.mkdtemp(prefix="kensa-review-curve-"))
    # the demo PatchCore only: the demo classifier and U-Net would be fitted meanwhile
    settings = Settings(data_dir=tmp, serve_client=False, admin_password=PASSWORD,
                        demo_tasks=["anomaly"],
                        review_uncertain_share=args.uncertain_share,
                        review_random_share=args.random_share)
    app = create_app(settings)
    rounds = []
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost",
            timeout=600) as http:
        while (ready := await http.get("/readyz")).status_code != 200:
            if ready.status_code != 503:  # e.g. a Host the service does not serve
                raise RuntimeError(f"/readyz answered {ready.status_code}: {ready.text}")
            await asyncio.sleep(0.2)
        token = (await http.post(f"{API}/auth/token", data={
            "username": "admin", "password": PASSWORD})).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        dataset = (await http.post(f"{API}/datasets", json={"name": "teach"})).json()
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p, _ in teach]
        assert (await http.post(f"{API}/datasets/{dataset['id']}/images",
                                files=files)).status_code == 201
        started = time.perf_counter()
        job = await wait_job(http, (await http.post(f"{API}/jobs", json={
            "kind": "train", "dataset": dataset["id"], "detector": "patchcore",
            "name": "kolektor"})).json()["id"])
        await http.post(f"{API}/detectors/kolektor/versions/{job['version']}/activate")
        figures = held_out_figures(app.state.pool.get("kolektor").detector, test)
        rounds.append({"round": 0, "reviewed_total": 0, "good_learnt": 0,
                       "seconds": round(time.perf_counter() - started, 1),
                       "load_average": [round(x, 2) for x in os.getloadavg()], **figures})
        print(rounds[-1], flush=True)
        truth = {}
        reviewed = good_learnt = 0
        for n in range(1, args.rounds + 1):
            started = time.perf_counter()
            batch = stream[(n - 1) * args.per_round:n * args.per_round]
            for path, defective in batch:
                response = await http.post(f"{API}/inspections", data={
                    "station": "kolektor", "detectors": "kolektor"},
                    files={"image": (path.name, path.read_bytes(), "image/jpeg")})
                assert response.status_code == 201, response.text
                truth[response.json()["id"]] = defective
            queue = (await http.get(f"{API}/reviews", params={"limit": 500})).json()
            answered = {"ok": 0, "defect": 0}
            for item in queue["items"]:
                defective = truth[item["inspection"]["id"]]
                body = ({"decision": "defect", "labels": ["crack"]} if defective
                        else {"decision": "ok"})
                response = await http.post(
                    f"{API}/inspections/{item['inspection']['id']}/review", json=body)
                assert response.status_code == 200, response.text
                answered[body["decision"]] += 1
            reviewed += len(queue["items"])
            agreement = (await http.get(f"{API}/stats/agreement")).json()["totals"]
            job = await wait_job(http, (await http.post(f"{API}/jobs", json={
                "kind": "retrain_from_reviews", "name": "kolektor",
                "config": {"holdout_share": 0.0}})).json()["id"])
            good_learnt += job["metrics"]["n_update"] + job["metrics"]["n_calibration"]
            await http.post(f"{API}/detectors/kolektor/versions/{job['version']}/activate")
            figures = held_out_figures(app.state.pool.get("kolektor").detector, test)
            rounds.append({
                "round": n, "inspected": len(batch), "queued": len(queue["items"]),
                "answered": answered, "reviewed_total": reviewed,
                "good_learnt": good_learnt, "n_update": job["metrics"]["n_update"],
                "n_calibration": job["metrics"]["n_calibration"],
                "threshold_method": job["metrics"]["threshold_method"],
                "memory_bank": job["metrics"]["update"].get("memory_bank"),
                "machine_vs_reviewer_so_far": {
                    k: agreement[k] for k in ("reviewed", "agreement_rate",
                                              "false_alarm_rate", "miss_rate")},
                "seconds": round(time.perf_counter() - started, 1),
                "load_average": [round(x, 2) for x in os.getloadavg()], **figures})
            print(rounds[-1], flush=True)
    return {
        "benchmark": "review_curve", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": "KolektorSDD: teach + stream from images/train, held-out images/val "
                f"({sum(not d for _, d in test)} good + {sum(d for _, d in test)} defective)",
        "detector": "patchcore (default config, input size from the first image)",
        "teach_good": args.teach, "per_round": args.per_round,
        "sampling": {"uncertain_share": args.uncertain_share,
                     "random_share": args.random_share, "plus": "every 'review' verdict"},
        "seed": args.seed, "machine": f"{platform.machine()}, shared with other jobs",
        "rounds": rounds,
    }


def plot(result: dict, path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rounds"]
    x = [r["reviewed_total"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(x, [r["image_auroc"] for r in rows], "o-", label="held-out image AUROC")
    ax.plot(x, [r["false_alarm_rate"] for r in rows], "s--", label="false-alarm rate")
    ax.plot(x, [r["miss_rate"] for r in rows], "^:", label="miss rate")
    for r in rows:
        ax.annotate(f"r{r['round']}", (r["reviewed_total"], r["image_auroc"]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("inspections reviewed (scripted reviewer, from the ground truth)\n"
                  f"held out: {result['data'].split('held-out ')[-1]}; seed {result['seed']}",
                  fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Review loop on KolektorSDD: PatchCore taught on {result['teach_good']} good")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teach", type=int, default=5, help="good images to teach from")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=50, help="inspections per round")
    parser.add_argument("--uncertain-share", type=float, default=0.3)
    parser.add_argument("--random-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="write review_curve-TAG.json/.png instead")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    suffix = f"-{args.tag}" if args.tag else ""
    results = RESULTS.with_name(f"review_curve{suffix}.json")
    plot_path = PLOT.with_name(f"review_curve{suffix}.png")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, plot_path)
    print(f"wrote {results} and {plot_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
