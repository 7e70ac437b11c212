"""The default pipeline of a fresh install: with no trained model the service fits the demo
PatchCore before it is ready, then the demo classifier and U-Net in the background, and a
synthetic defective strip comes back with a label, a mask, a heatmap and Grad-CAM."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from backend_testing import encode, make_settings, running_service

from kensa.backend.services.demo import DEMO_STRIP_SIZE, RECIPES
from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.anyio


async def test_fresh_install_serves_the_three_demo_detectors(tmp_path: Path) -> None:
    model_dir = tmp_path / "no-models"
    async with running_service(make_settings(tmp_path, model_dir)) as service:
        client = service.client
        ready = (await client.get("/readyz")).json()
        assert ready["detectors"] == [RECIPES["anomaly"].name] and ready["demo"] is True
        assert set(ready["pending"]) == {RECIPES["classify"].name, RECIPES["segment"].name}
        deadline = time.monotonic() + 1200
        while (ready := (await client.get("/readyz")).json()).get("pending"):
            assert time.monotonic() < deadline, ready
            await anyio.sleep(1)
        listed = (await client.get("/api/v1/detectors")).json()
        assert {d["task"] for d in listed} == {"anomaly", "classify", "segment"}
        assert all(d["demo"] and d["weights"]["source"] == "packaged" for d in listed
                   if d["task"] != "anomaly")

        strip = SteelStripGenerator(size=DEMO_STRIP_SIZE, seed=99).defective(0)
        response = await service.upload(encode(strip.image))
        assert response.status_code == 201, response.text
        record = response.json()
        task_of = {d["name"]: d["task"] for d in listed}
        by_task: dict[str, list[dict]] = {"classify": [], "segment": [], "anomaly": []}
        for finding in record["findings"]:
            by_task[task_of[finding["detector"]]].append(finding)
        assert record["verdict"] == "defect"
        assert {f["label"] for f in by_task["classify"]} & set(strip.labels)
        assert any(f.get("mask_url") for f in by_task["segment"])
        assert {"heatmap", "gradcam"} <= {e["kind"] for e in record["evidence"]}
        assert {d["name"] for d in record["detectors"]} == {r.name for r in RECIPES.values()}
        assert record["notice"]
    for recipe in RECIPES.values():  # cached for the next start
        assert (model_dir / recipe.name / "config.json").is_file()
