"""``retrain_from_reviews`` for supervised detectors through real HTTP: a classifier taught on
a few synthetic strips fine-tunes on reviewed inspections (a person's labels), and the candidate
is compared with the active version on the held-out share of reviews before anyone activates
it; too few usable answers fail the job with a clear message; bad config is a 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backend_testing import STRIP_SIZE, Service, encode, make_settings, running_service
from test_reviews import wait_job

from kensa.backend.jobs.retrain import held_out
from kensa.models import artifacts
from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.registry import create_detector, get_spec

pytestmark = pytest.mark.anyio
NAME = "strip-classifier"
LABELS = ["scratches", "patches"]
GEN = SteelStripGenerator(size=STRIP_SIZE, seed=31)
SHARE = 0.3


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small classifier taught on 8 strips (quick settings)."""
    detector = create_detector("classifier_lite0", weights="none", labels=LABELS, name=NAME,
                               **get_spec("classifier_lite0").quick)
    detector.post.heatmaps = False
    strips = [GEN.good(i) for i in range(4)] + [GEN.defective(i, labels=(LABELS[i % 2],))
                                                for i in range(4)]
    detector.fit([Sample(labels=s.labels, image=s.image, group=s.name) for s in strips],
                 progress=False)
    return artifacts.save(detector, tmp_path_factory.mktemp("sup") / NAME).parent


@pytest.fixture
async def svc(tmp_path: Path, classifier_dir: Path) -> AsyncIterator[Service]:
    async with running_service(make_settings(tmp_path, classifier_dir)) as running:
        yield running


async def review_strips(svc: Service, start: int, n: int) -> list[tuple[dict, str]]:
    out = []
    for i in range(start, start + n):
        strip = GEN.good(500 + i) if i % 2 else GEN.defective(500 + i,
                                                              labels=(LABELS[i % 4 // 2],))
        created = await svc.upload(encode(strip.image), station="sup")
        assert created.status_code == 201, created.text
        record = created.json()
        body = ({"decision": "ok"} if i % 2 else
                {"decision": "defect", "labels": [LABELS[i % 4 // 2]]})
        answered = await svc.client.post(f"/api/v1/inspections/{record['id']}/review",
                                         json=body)
        assert answered.status_code == 200, answered.text
        out.append((record, body["decision"]))
    return out


async def retrain(svc: Service, **config) -> dict:
    response = await svc.client.post("/api/v1/jobs", json={
        "kind": "retrain_from_reviews", "name": NAME, "config": config})
    assert response.status_code == 202, response.text
    return await wait_job(svc, response.json()["id"])


async def test_classifier_fine_tunes_on_reviews(svc: Service) -> None:
    jobs = svc.count("job")
    for config in ({"epochs": 0}, {"epochs": "3"}, {"epochs": True}, {"holdout_share": 1}):
        response = await svc.client.post("/api/v1/jobs", json={
            "kind": "retrain_from_reviews", "name": NAME, "config": config})
        assert response.status_code == 422, (config, response.text)
    assert svc.count("job") == jobs

    reviewed = await review_strips(svc, 0, 3)
    failed = await retrain(svc, holdout_share=SHARE, epochs=1)
    assert failed["status"] == "failed" and "review more" in failed["message"], failed

    reviewed += await review_strips(svc, 3, 17)
    job = await retrain(svc, holdout_share=SHARE, epochs=2)
    assert job["status"] == "succeeded", job
    metrics = job["metrics"]
    kept_out = [r for r, _ in reviewed if held_out(uuid.UUID(r["id"]), SHARE)]
    assert metrics["method"] == "fine-tune" and metrics["n_train"] == 20 - len(kept_out)
    assert metrics["fine_tune"]["epochs_run"] == 2
    assert set(metrics["fine_tune"]["thresholds"]) == set(LABELS)
    comparison = metrics["held_out_reviews"]
    assert comparison["n"] == len(kept_out) > 0
    for role in ("candidate", "active"):
        assert 0 <= comparison[role]["agreement"] <= 1

    versions = (await svc.client.get(f"/api/v1/detectors/{NAME}/versions")).json()
    candidate = next(v for v in versions if v["version"] == job["version"])
    assert candidate["state"] == "candidate" and candidate["parent"]  # not active yet
    served = (await svc.client.get("/api/v1/detectors")).json()
    assert {d["name"]: d["version"] for d in served}[NAME] == candidate["parent"]
