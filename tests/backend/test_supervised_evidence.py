"""Grad-CAM evidence and several detectors per upload, with a real (untrained-head) classifier.

The classifier's backbone has its packaged ImageNet weights and its head is untrained: its
thresholds are set near zero so it reports every label with Grad-CAM maps, which is all the
service needs to prove it stores and re-renders classifier evidence generically.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from backend_testing import Service, encode, make_settings, running_service
from PIL import Image

from kensa.models import artifacts
from kensa.models.data.synthetic import DEFECT_CLASSES
from kensa.models.registry import create_detector, get_spec

pytestmark = pytest.mark.anyio
CLASSIFIER = "classifier_lite0"


@pytest.fixture(scope="session")
def classifier_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("artifacts") / CLASSIFIER
    detector = create_detector(CLASSIFIER, weights="packaged", labels=list(DEFECT_CLASSES),
                               **get_spec(CLASSIFIER).quick)
    detector.set_threshold(1e-4)
    detector.metadata.notes = "test only: untrained head, thresholds near zero"
    artifacts.save(detector, directory)
    return directory


@pytest.fixture
async def two_detectors(tmp_path: Path, model_dir: Path, classifier_artifact: Path
                        ) -> AsyncIterator[Service]:
    shutil.copytree(classifier_artifact, model_dir / CLASSIFIER)
    async with running_service(make_settings(tmp_path, model_dir)) as service:
        yield service


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


async def test_gradcam_evidence_is_stored_and_rerendered(two_detectors: Service,
                                                         strips) -> None:
    strip = strips.good(40)
    response = await two_detectors.upload(encode(strip.image))
    assert response.status_code == 201, response.text
    record = response.json()
    runs = {r["detector"]: r for r in record["runs"]}
    assert set(runs) == {"patchcore", CLASSIFIER}
    assert runs[CLASSIFIER]["verdict"] == "defect" and record["verdict"] == "defect"
    assert runs[CLASSIFIER]["anomaly_score"] is None
    # the combined anomaly score only comes from the anomaly detector
    patchcore = runs["patchcore"]
    assert record["anomaly_score"] == pytest.approx(patchcore["anomaly_score"] /
                                                    patchcore["threshold"])
    classified = [f for f in record["findings"] if f["detector"] == CLASSIFIER]
    assert sorted(f["label"] for f in classified) == sorted(DEFECT_CLASSES)
    assert all(f["bbox"] is None and f["mask_url"] is None for f in classified)
    assert set(record["labels"]) >= set(DEFECT_CLASSES)
    assert two_detectors.count("evidence_map") == 1 + len(DEFECT_CLASSES)

    url = record["overlay_url"]
    gradcam = png_array((await two_detectors.client.get(url, params={"layers": "gradcam"})
                         ).content)
    nothing = png_array((await two_detectors.client.get(url, params={"layers": ""})).content)
    heatmap = png_array((await two_detectors.client.get(url, params={"layers": "heatmap"})
                         ).content)
    assert np.array_equal(nothing, strip.image)  # no layers: the photo itself
    assert not np.array_equal(gradcam, nothing)
    assert not np.array_equal(gradcam, heatmap)

    # filters and stats see both detectors' labels
    listed = (await two_detectors.client.get("/api/v1/inspections",
                                             params={"detector": CLASSIFIER,
                                                     "label": "crazing"})).json()
    assert [i["id"] for i in listed["items"]] == [record["id"]]
    stats = (await two_detectors.client.get("/api/v1/stats")).json()
    assert {label: stats["totals"]["by_label"][label] for label in DEFECT_CLASSES} == {
        label: 1 for label in DEFECT_CLASSES}


async def test_choose_one_detector_and_per_label_thresholds(two_detectors: Service,
                                                            model_dir: Path, strips) -> None:
    photo = encode(strips.good(41).image)
    only = (await two_detectors.upload(photo, detectors=CLASSIFIER)).json()
    assert [r["detector"] for r in only["runs"]] == [CLASSIFIER]
    assert only["anomaly_score"] is None
    response = await two_detectors.client.patch(f"/api/v1/detectors/{CLASSIFIER}",
                                                json={"threshold": 0.999999,
                                                      "label": "crazing"})
    assert response.status_code == 200, response.text
    assert response.json()["threshold"]["crazing"] == pytest.approx(0.999999)
    after = (await two_detectors.upload(photo, detectors=CLASSIFIER)).json()
    assert "crazing" not in after["labels"]
    saved = json.loads((model_dir / CLASSIFIER / "config.json").read_text())
    assert saved["postprocess"]["thresholds"]["crazing"] == pytest.approx(0.999999)
    bad = await two_detectors.client.patch(f"/api/v1/detectors/{CLASSIFIER}",
                                           json={"threshold": 0.5, "label": "anomaly"})
    assert bad.status_code == 422
