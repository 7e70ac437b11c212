"""The default pipeline with no trained model: the service serves the demo PatchCore as soon as
it is fitted, fits the demo classifier and U-Net in the background (a niced subprocess) and
serves them when saved; then a synthetic defective strip comes back with a label, a mask, a
heatmap and Grad-CAM, and the fitted demo is cached for the next start."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from backend_testing import encode, make_settings, running_service

from kensa.backend.services.demo import DEMO_STRIP_SIZE, RECIPES
from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.anyio
FIT_TIMEOUT = 1800  # the background fits; about two minutes on two idle cores


async def test_default_pipeline_labels_masks_heatmap_and_gradcam(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    settings = make_settings(tmp_path, model_dir)  # the default demo recipes
    test = SteelStripGenerator(size=DEMO_STRIP_SIZE, seed=99)  # unseen strips
    async with running_service(settings) as service:
        client = service.client
        ready = (await client.get("/readyz")).json()
        assert ready["demo"] is True and RECIPES["anomaly"].name in ready["detectors"]
        deadline = time.monotonic() + FIT_TIMEOUT
        while (await client.get("/readyz")).json().get("pending"):
            assert time.monotonic() < deadline, "demo detectors still fitting"
            await anyio.sleep(2)
        detectors = {d["task"]: d for d in (await client.get("/api/v1/detectors")).json()}
        assert sorted(detectors) == ["anomaly", "classify", "segment"]
        assert all(d["demo"] for d in detectors.values())
        assert "packaged" in str(detectors["classify"]["weights"])  # offline ImageNet start

        record = (await service.upload(encode(test.defective(1, labels=("patches",)).image)
                                       )).json()
        assert record["verdict"] == "defect" and "demo" in record["notice"].lower()
        by_task = {f["detector"]: f for f in record["findings"]}
        assert RECIPES["classify"].name in by_task, record["findings"]
        masks = [f for f in record["findings"]
                 if f["detector"] == RECIPES["segment"].name and f["area_px"] > 0]
        assert masks and all(f["mask_url"] for f in masks)
        kinds = {e["kind"] for e in record["evidence"]}
        assert {"heatmap", "gradcam"} <= kinds
        mask = await client.get(masks[0]["mask_url"])
        assert mask.status_code == 200 and mask.content.startswith(b"\x89PNG")

        good = [(await service.upload(encode(test.good(i).image))).json() for i in range(4)]
        assert sum(r["verdict"] == "defect" for r in good) <= 1, [r["verdict"] for r in good]

    for recipe in RECIPES.values():  # cached: the next start fits nothing
        assert (model_dir / recipe.name / "config.json").is_file()
    async with running_service(settings) as again:
        ready = (await again.client.get("/readyz")).json()
        assert "pending" not in ready and len(ready["detectors"]) == 3
