"""Teaching the supervised kinds through real HTTP: defect images uploaded with a label and a
mask PNG, a classifier and a U-Net trained by the job runner's worker process (quick settings),
held-out metrics, activation; masks checked before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from backend_testing import STRIP_SIZE, Service, encode
from test_teach import files, good_pngs, wait_job

from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.anyio
GEN = SteelStripGenerator(size=STRIP_SIZE, seed=23)
LABELS = ("scratches", "patches")


def defects(label: str, n: int, start: int = 0) -> tuple[list[bytes], list[bytes]]:
    """Strips with one defect family each, and their masks as 0/255 PNGs."""
    strips = [GEN.defective(start + i, labels=(label,)) for i in range(n)]
    return ([encode(s.image) for s in strips],
            [encode(np.where(s.masks[label], 255, 0).astype(np.uint8)) for s in strips])


def with_masks(images: list[bytes], masks: list[bytes]) -> list:
    return files(images) + [("mask", (f"{i}.png", m, "image/png")) for i, m in enumerate(masks)]


async def labelled_dataset(client, name: str) -> str:
    dataset = (await client.post("/api/v1/datasets", json={"name": name})).json()
    url = f"/api/v1/datasets/{dataset['id']}/images"
    assert (await client.post(url, files=files(good_pngs(4)))).status_code == 201
    for k, label in enumerate(LABELS):
        images, masks = defects(label, 3, start=10 * k)
        response = await client.post(url, files=with_masks(images, masks),
                                     data={"label": label})
        assert response.status_code == 201, response.text
    assert response.json()["counts"] == {"good": 4, "patches": 3, "scratches": 3}
    return dataset["id"]


async def train_and_activate(svc: Service, dataset: str, kind: str) -> dict:
    client = svc.client
    response = await client.post("/api/v1/jobs", json={
        "kind": "train", "dataset": dataset, "detector": kind, "name": kind, "quick": True,
        "config": {"epochs": 2}})
    assert response.status_code == 202, response.text
    job, seen = await wait_job(client, response.json()["id"], timeout=900)
    assert job["status"] == "succeeded", job["message"]
    assert seen == sorted(seen) and job["progress"] == 1.0
    assert sorted(job["metrics"]["labels"]) == sorted(LABELS)
    assert job["metrics"]["n_holdout"] >= 3  # a part of every label held out
    (version,) = (await client.get(f"/api/v1/detectors/{kind}/versions")).json()
    assert version["version"] == job["version"] and version["state"] == "candidate"
    response = await client.post(f"/api/v1/detectors/{kind}/versions/{job['version']}/activate")
    assert response.status_code == 200, response.text
    return job


@pytest.mark.parametrize(("kind", "task", "metric"), [
    ("classifier_lite0", "classify", "macro_f1"), ("segmenter_lite0", "segment", "dice")])
async def test_a_labelled_dataset_trains_a_supervised_kind(sqlite_service: Service, kind: str,
                                                           task: str, metric: str) -> None:
    svc, client = sqlite_service, sqlite_service.client
    dataset = await labelled_dataset(client, "labelled")
    assert svc.count("dataset_image") == 10
    with svc.engine.connect() as conn:
        masked = conn.execute(sa.text("SELECT count(*) FROM dataset_image WHERE mask_key IS "
                                      "NOT NULL")).scalar_one()
    assert masked == 6

    job = await train_and_activate(svc, dataset, kind)
    assert metric in job["metrics"], job["metrics"]
    image, _ = defects("scratches", 1, start=40)
    record = (await svc.upload(image[0])).json()
    served = {d["name"]: d["version"] for d in record["detectors"]}
    assert served[kind] == job["version"]
    detectors = {d["name"]: d for d in (await client.get("/api/v1/detectors")).json()}
    assert detectors[kind]["task"] == task
    assert sorted(detectors[kind]["labels"]) == sorted(LABELS)


async def test_bad_masks_and_unfit_datasets_are_refused(sqlite_service: Service) -> None:
    svc, client = sqlite_service, sqlite_service.client
    dataset = (await client.post("/api/v1/datasets", json={"name": "m"})).json()
    url = f"/api/v1/datasets/{dataset['id']}/images"
    images, masks = defects("scratches", 2)
    before_files, before_rows = svc.files(), svc.counts()
    small = encode(np.zeros((64, 128), np.uint8))
    jpeg_mask = encode(np.zeros(STRIP_SIZE, np.uint8), "JPEG")
    cases = [
        (with_masks(images, masks[:1]), {"label": "scratches"}, 422, "1 masks for 2 images"),
        (with_masks(images, [masks[0], small]), {"label": "scratches"}, 422, "mask 2 is 128x64"),
        (with_masks(images, masks), {"label": "good"}, 422, "not 'good'"),
        (with_masks(images[:1], [b"not a png"]), {"label": "scratches"}, 415, "mask 1"),
        (with_masks(images[:1], [jpeg_mask]), {"label": "scratches"}, 415, "must be a PNG"),
    ]
    for parts, data, status, says in cases:
        response = await client.post(url, files=parts, data=data)
        assert response.status_code == status, response.text
        assert says in response.json()["detail"]
    assert svc.files() == before_files and svc.counts() == before_rows

    assert (await client.post(url, files=files(good_pngs(6)))).status_code == 201
    assert (await client.post(url, files=files(images),
                              data={"label": "scratches"})).status_code == 201  # no masks

    def job(kind: str) -> dict:
        return {"kind": "train", "dataset": "m", "detector": kind, "name": kind}

    response = await client.post("/api/v1/jobs", json=job("segmenter_lite0"))
    assert response.status_code == 422 and "with a mask" in response.text
    other = (await client.post("/api/v1/datasets", json={"name": "only-good"})).json()
    await client.post(f"/api/v1/datasets/{other['id']}/images", files=files(good_pngs(6)))
    response = await client.post("/api/v1/jobs", json={**job("classifier_lite0"),
                                                       "dataset": "only-good"})
    assert response.status_code == 422 and "labelled defect" in response.text
    assert (await client.get("/api/v1/jobs")).json() == []
