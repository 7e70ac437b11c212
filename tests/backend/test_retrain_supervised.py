"""``retrain_from_reviews`` for supervised detectors through real HTTP: a classifier taught on
a few synthetic strips fine-tunes on reviewed inspections (a person's labels), and the candidate
is compared with the active version on the held-out share of reviews before anyone activates
it; too few usable answers fail the job with a clear message; bad config is a 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from backend_testing import STRIP_SIZE, Service, encode, make_settings, running_service
from test_reviews import wait_job

from kensa.backend.jobs.retrain import held_out
from kensa.models import artifacts
from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.registry import create_detector, get_spec
from tests.shapes import INPUT as SHAPE_INPUT
from tests.shapes import LABELS as SHAPE_LABELS
from tests.shapes import make_samples

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


@pytest.fixture(scope="module")
def segmenter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small segmenter of the test shapes, taught for two epochs on 8 of them."""
    detector = create_detector("segmenter_lite0", weights="none", name="shapes-seg",
                               labels=SHAPE_LABELS, input_size=SHAPE_INPUT,
                               decoder_channels=(32, 16, 16, 8, 8), epochs=2, batch_size=4,
                               patience=2, photometric=False, seed=0)
    detector.fit(make_samples(8, seed=1), make_samples(4, seed=2), progress=False)
    return artifacts.save(detector, tmp_path_factory.mktemp("seg") / "shapes-seg").parent


async def test_segmenter_fine_tunes_on_reviewed_masks(tmp_path: Path,
                                                      segmenter_dir: Path) -> None:
    async with running_service(make_settings(tmp_path, segmenter_dir)) as svc:
        samples = make_samples(16, seed=5)
        usable = kept_out = 0
        for k, sample in enumerate(samples):
            created = await svc.upload(encode(sample.image.astype("uint8")), station="shapes")
            record = created.json()
            url = f"/api/v1/inspections/{record['id']}/review"
            out = held_out(uuid.UUID(record["id"]), SHARE)
            if not sample.labels:
                answered = await svc.client.post(url, json={"decision": "ok"})
                usable += not out
            elif k % 5 == 0:  # a defect answered without a mask: the segmenter cannot use it
                answered = await svc.client.post(url, json={"decision": "defect",
                                                            "labels": list(sample.labels)})
            else:
                union = np.zeros(sample.image.shape[:2], bool)
                for mask in sample.masks_inline.values():
                    union |= mask
                answered = await svc.client.post(url, data={
                    "decision": "defect", "labels": ",".join(sample.labels)},
                    files={"mask": ("m.png", encode(union.astype("uint8") * 255), "image/png")})
                usable += not out
            kept_out += out
            assert answered.status_code == 200, answered.text
        response = await svc.client.post("/api/v1/jobs", json={
            "kind": "retrain_from_reviews", "name": "shapes-seg",
            "config": {"holdout_share": SHARE, "epochs": 1}})
        assert response.status_code == 202, response.text
        job = await wait_job(svc, response.json()["id"])
        assert job["status"] == "succeeded", job
        metrics = job["metrics"]
        assert metrics["method"] == "fine-tune" and metrics["n_train"] == usable
        assert metrics["held_out_reviews"]["n"] == kept_out
        assert metrics["fine_tune"]["epochs_run"] == 1
