"""Readiness, detector loading (MODEL_DIR, --model, the demo fallback) and the demo notice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from backend_testing import encode, make_settings, running_service, wait_ready

from kensa.backend.main import create_app
from kensa.backend.services.inference import DEMO_DIR_NAME

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz(sqlite_service) -> None:
    assert (await sqlite_service.client.get("/healthz")).json() == {"status": "ok"}
    ready = await sqlite_service.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "detectors": ["patchcore"], "demo": False}


async def test_not_ready_until_detectors_load(tmp_path: Path, model_dir: Path) -> None:
    """Before the lifespan has loaded anything, /readyz and the inspection API say 503."""
    app = create_app(make_settings(tmp_path, model_dir))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as client:
        response = await client.get("/readyz")
        assert response.status_code == 503 and response.json()["status"] == "loading"
        assert (await client.get("/api/v1/detectors")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200


async def test_broken_artifact_fails_readiness_clearly(tmp_path: Path, model_dir: Path) -> None:
    (model_dir / "broken").mkdir()
    (model_dir / "broken" / "config.json").write_text('{"format": 1, "kind": "nonesuch"}')
    async with running_service(make_settings(tmp_path, model_dir), ready=False) as service:
        response = await wait_ready(service.client)
        assert response.status_code == 503
        assert response.json()["status"] == "failed"
        assert "nonesuch" in response.json()["detail"]
        upload = await service.upload(encode(np.zeros((32, 32, 3), np.uint8)))
        assert upload.status_code == 503 and "nonesuch" in upload.json()["detail"]


async def test_extra_model_dirs_are_served(tmp_path: Path, patchcore_artifact: Path) -> None:
    second = tmp_path / "elsewhere" / "line2"
    shutil.copytree(patchcore_artifact, second)
    config = json.loads((second / "config.json").read_text())
    config["metadata"]["name"] = "patchcore-line2"
    (second / "config.json").write_text(json.dumps(config))
    model_dir = tmp_path / "models"
    shutil.copytree(patchcore_artifact, model_dir / "patchcore")
    settings = make_settings(tmp_path, model_dir, extra_models=[second])
    async with running_service(settings) as service:
        names = [d["name"] for d in (await service.client.get("/api/v1/detectors")).json()]
        assert names == ["patchcore", "patchcore-line2"]


async def test_demo_detector_is_fitted_cached_and_announced(tmp_path: Path, strips) -> None:
    model_dir = tmp_path / "empty-models"
    settings = make_settings(tmp_path, model_dir, demo_good_images=6, demo_tasks=["anomaly"])
    async with running_service(settings) as service:
        (item,) = (await service.client.get("/api/v1/detectors")).json()
        assert item["name"] == DEMO_DIR_NAME and item["demo"] is True
        assert "synthetic" in item["notes"]
        record = (await service.upload(encode(strips.good(0).image))).json()
        assert record["notice"] and "demo" in record["notice"].lower()
        assert (await service.client.get("/readyz")).json()["demo"] is True
    cached = model_dir / DEMO_DIR_NAME / "config.json"
    assert json.loads(cached.read_text())["metadata"]["demo"] is True
    stamp = cached.stat().st_mtime_ns, (model_dir / DEMO_DIR_NAME / "weights.safetensors"
                                        ).stat().st_mtime_ns
    async with running_service(settings) as again:  # loaded from the cache, not refitted
        (item2,) = (await again.client.get("/api/v1/detectors")).json()
        assert item2["version"] == item["version"]
    assert (cached.stat().st_mtime_ns,
            (model_dir / DEMO_DIR_NAME / "weights.safetensors").stat().st_mtime_ns) == stamp
