"""A trained segmenter artifact is served like any detector: its masks reach the record, the
mask endpoint and the overlay, with the post-processing it was saved with."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from backend_testing import Service, encode, make_settings, running_service
from PIL import Image

from kensa.models import artifacts
from kensa.models.registry import create_detector
from tests.shapes import INPUT, LABELS, make_samples

pytestmark = pytest.mark.anyio
NAME = "shapes-segmenter"


@pytest.fixture(scope="session")
def segmenter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    detector = create_detector("segmenter_lite0", weights="packaged", name=NAME, labels=LABELS,
                               input_size=INPUT, decoder_channels=(64, 32, 16, 16, 8),
                               epochs=12, batch_size=4, lr=3e-3, patience=12,
                               photometric=False, seed=0)
    detector.fit(make_samples(24, seed=1), make_samples(12, seed=2), progress=False)
    return artifacts.save(detector, tmp_path_factory.mktemp("models") / NAME)


@pytest.fixture
async def service(tmp_path: Path, segmenter_dir: Path) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, segmenter_dir.parent)
    async with running_service(settings) as running:
        yield running


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


async def test_segmenter_masks_are_served(service: Service, segmenter_dir: Path) -> None:
    detectors = (await service.client.get("/api/v1/detectors")).json()
    assert [d["name"] for d in detectors] == [NAME]
    saved = json.loads((segmenter_dir / "config.json").read_text())["postprocess"]
    assert detectors[0]["task"] == "segment" and detectors[0]["labels"] == LABELS
    assert detectors[0]["threshold"] == {
        label: post["threshold"] for label, post in saved["classes"].items()
    }

    sample = make_samples(8, seed=9)[3]  # i % 4 == 3: both a spot pair and a line
    truth = sample.masks_inline
    response = await service.upload(encode(sample.image))
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["verdict"] == "defect"
    assert set(record["labels"]) == set(LABELS)

    found = {label: np.zeros(sample.image.shape[:2], bool) for label in LABELS}
    for finding in record["findings"]:
        mask = png((await service.client.get(finding["mask_url"])).content) > 0
        assert mask.shape == sample.image.shape[:2]
        assert mask.sum() == finding["area_px"]
        x0, y0, x1, y1 = finding["bbox"]
        assert mask[y0:y1, x0:x1].sum() == mask.sum()
        found[finding["label"]] |= mask
    for label, mask in found.items():  # a short fit may add a speck; the masks must be right
        precision = (mask & truth[label]).sum() / mask.sum()
        recall = (mask & truth[label]).sum() / truth[label].sum()
        assert precision > 0.6 and recall > 0.6, (label, precision, recall)

    url = f"/api/v1/inspections/{record['id']}/overlay"
    painted = png((await service.client.get(url, params={"layers": "masks"})).content)
    bare = png((await service.client.get(url, params={"layers": ""})).content)
    changed = np.abs(painted.astype(int) - bare.astype(int)).sum(axis=2) > 0
    everything = truth["spot"] | truth["line"]
    assert changed[everything].mean() > 0.5
    assert changed[~everything].mean() < 0.2
