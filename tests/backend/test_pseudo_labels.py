"""Pseudo-labels through real HTTP: inspections whose classifier and segmenter agree with high
confidence are proposed (and only those), a manager confirms them in bulk as reviews (the
segmenter's masks as review masks, the photos into the station's datasets), and bad input is
refused with nothing written. The two models are real (untrained, their thresholds set through
the API so that they agree or disagree on purpose); SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from backend_testing import Service, encode, make_settings, running_service, sign_in
from PIL import Image

from kensa.models import artifacts
from kensa.models.registry import create_detector
from tests.shapes import INPUT, LABELS, make_samples

pytestmark = pytest.mark.anyio
CLASSIFIER, SEGMENTER = "shapes-classifier", "shapes-segmenter"
OPEN, CLOSED = 1e-30, 0.999999
URL = "/api/v1/reviews/pseudo-labels"


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pseudo-models")
    classifier = create_detector("classifier_lite0", weights="none", labels=LABELS,
                                 input_size=INPUT, name=CLASSIFIER)
    classifier.post.heatmaps = False
    segmenter = create_detector("segmenter_lite0", weights="none", labels=LABELS,
                                input_size=INPUT, decoder_channels=(32, 16, 16, 8, 8),
                                name=SEGMENTER)
    for detector in (classifier, segmenter):
        detector.set_threshold(OPEN)
        artifacts.save(detector, folder / detector.name)
    return folder


@pytest.fixture
async def svc(tmp_path: Path, two_models: Path, database_url: str) -> AsyncIterator[Service]:
    import shutil

    model_dir = tmp_path / "models"
    shutil.copytree(two_models, model_dir)
    async with running_service(make_settings(tmp_path, model_dir, database_url)) as running:
        yield running


async def threshold(svc: Service, name: str, value: float, label: str | None = None) -> None:
    body = {"threshold": value, **({"label": label} if label else {})}
    response = await svc.client.patch(f"/api/v1/detectors/{name}", json=body)
    assert response.status_code == 200, response.text


async def inspect(svc: Service, image: np.ndarray) -> dict:
    response = await svc.upload(encode(image.astype(np.uint8)), station="s9")
    assert response.status_code == 201, response.text
    return response.json()


def written(svc: Service) -> dict[str, int]:
    return {t: svc.count(t) for t in ("inspection_review", "audit_event", "dataset_image")}


async def test_pseudo_labels_proposed_on_agreement_and_confirmed(svc: Service) -> None:
    images = [s.image for s in make_samples(6, seed=7)]
    # Both models open: every label from both, masks everywhere: they agree.
    agree = [await inspect(svc, images[i]) for i in range(3)]
    for record in agree:
        runs = {r["detector"]: r["verdict"] for r in record["runs"]}
        assert runs == {CLASSIFIER: "defect", SEGMENTER: "defect"}, runs
    # The classifier no longer says 'line', the segmenter still draws it: they disagree.
    await threshold(svc, CLASSIFIER, CLOSED, "line")
    disagree = await inspect(svc, images[3])
    assert {f["label"] for f in disagree["findings"] if f["detector"] == CLASSIFIER} == {"spot"}
    # Both closed: both say OK, an agreed good photo.
    await threshold(svc, SEGMENTER, CLOSED)
    await threshold(svc, CLASSIFIER, CLOSED)
    good = await inspect(svc, images[4])
    assert good["verdict"] == "ok" and not good["findings"]

    listed = (await svc.client.get(URL, params={"min_confidence": 0.0})).json()
    assert listed["scanned"] == 5 and listed["total"] == 4
    by_id = {item["inspection"]["id"]: item for item in listed["items"]}
    assert set(by_id) == {r["id"] for r in [*agree, good]}  # not the disagreeing one
    stamps = [item["inspection"]["created_at"] for item in listed["items"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first (MariaDB keeps whole seconds,
    assert stamps[0] == good["created_at"]  # so photos of one second may come in any order)
    for record in agree:
        item = by_id[record["id"]]
        assert (item["decision"], item["labels"]) == ("defect", sorted(LABELS))
        assert item["classifier"]["name"] == CLASSIFIER
        assert item["segmenter"]["name"] == SEGMENTER
        scores = [f["score"] for f in record["findings"]]
        assert item["confidence"] == pytest.approx(min(scores))
    assert (by_id[good["id"]]["decision"], by_id[good["id"]]["labels"],
            by_id[good["id"]]["confidence"]) == ("ok", [], None)

    # High confidence only: above every score of the agreeing photos, only the good one stays.
    top = max(f["score"] for r in agree for f in r["findings"])
    strict = (await svc.client.get(URL, params={"min_confidence": min(1.0, top + 1e-6)})).json()
    assert [i["inspection"]["id"] for i in strict["items"]] == [good["id"]]
    assert (await svc.client.get(URL, params={"station": "elsewhere",
                                              "min_confidence": 0})).json()["total"] == 0
    page = (await svc.client.get(URL, params={"min_confidence": 0, "limit": 2,
                                              "offset": 3})).json()
    assert len(page["items"]) == 1 and page["total"] == 4

    # Bad input: 4xx, nothing written.
    operator = {"Authorization": await operator_token(svc)}
    before = written(svc)
    confirm = f"{URL}/confirm"
    ids = [r["id"] for r in agree]
    for body, status in (
            ({"inspection_ids": [*ids, str(uuid.uuid4())], "min_confidence": 0}, 409),
            ({"inspection_ids": [*ids, disagree["id"]], "min_confidence": 0}, 409),
            ({"inspection_ids": ids, "min_confidence": top + 1e-6}, 409),  # not confident
            ({"inspection_ids": [ids[0], ids[0]], "min_confidence": 0}, 422),
            ({"inspection_ids": [], "min_confidence": 0}, 422),
            ({"inspection_ids": ["not-a-uuid"]}, 422),
            ({"inspection_ids": ids, "min_confidence": 1.5}, 422),
            ({}, 422)):
        response = await svc.client.post(confirm, json=body)
        assert response.status_code == status, (body, response.text)
    assert (await svc.client.get(URL, params={"min_confidence": -1})).status_code == 422
    assert (await svc.client.get(URL, headers=operator)).status_code == 403
    assert (await svc.client.post(confirm, headers=operator, json={
        "inspection_ids": ids, "min_confidence": 0})).status_code == 403
    assert written(svc) == before

    # The bulk confirm: reviews by the confirming manager, masks from the segmenter.
    response = await svc.client.post(confirm, json={
        "inspection_ids": [*ids, good["id"]], "min_confidence": 0})
    assert response.status_code == 200, response.text
    assert response.json()["confirmed"] == 4
    for before_record in [*agree, good]:
        after = (await svc.client.get(f"/api/v1/inspections/{before_record['id']}")).json()
        assert (after["verdict"], after["anomaly_score"]) == (before_record["verdict"],
                                                              before_record["anomaly_score"])
        assert after["review"]["by"] == "admin" and after["review_status"] == "done"
        assert "pseudo-label" in after["review"]["comment"]
    first = (await svc.client.get(f"/api/v1/inspections/{ids[0]}")).json()
    assert (first["review"]["decision"], sorted(first["review"]["labels"])) == (
        "defect", sorted(LABELS))
    mask = await svc.client.get(first["review"]["mask_url"])
    pixels = np.asarray(Image.open(io.BytesIO(mask.content))) > 0
    drawn = np.zeros_like(pixels)
    for finding in first["findings"]:
        if finding["detector"] == SEGMENTER:
            found = await svc.client.get(finding["mask_url"])
            drawn |= np.asarray(Image.open(io.BytesIO(found.content))) > 0
    assert drawn.any() and (pixels == drawn).all()
    kept = (await svc.client.get(f"/api/v1/inspections/{good['id']}")).json()["review"]
    assert (kept["decision"], kept["mask_url"]) == ("ok", None)

    datasets = {d["name"]: d for d in (await svc.client.get("/api/v1/datasets")).json()}
    assert datasets["s9-good"]["counts"] == {"good": 1}
    assert datasets["s9-labelled"]["counts"] == {label: 3 for label in LABELS}
    assert svc.count("audit_event") == before["audit_event"] + 4
    assert (await svc.client.get(URL, params={"min_confidence": 0})).json()["total"] == 0
    again = await svc.client.post(confirm, json={"inspection_ids": ids[:1],
                                                 "min_confidence": 0})
    assert again.status_code == 409  # reviewed already


async def operator_token(svc: Service) -> str:
    created = await svc.client.post("/api/v1/users", json={
        "username": "olga", "password": "operator-password-1", "role": "operator"})
    assert created.status_code == 201, created.text
    return await sign_in(svc.client, "olga", "operator-password-1")
