"""Listing detectors and changing a threshold at run time (persisted to config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backend_testing import Service, encode, make_settings, running_service

pytestmark = pytest.mark.anyio


async def test_list_detectors(sqlite_service: Service, patchcore_artifact: Path) -> None:
    response = await sqlite_service.client.get("/api/v1/detectors")
    assert response.status_code == 200
    (item,) = response.json()
    config = json.loads((patchcore_artifact / "config.json").read_text())
    assert item["name"] == "patchcore" and item["kind"] == "patchcore"
    assert item["task"] == "anomaly" and item["labels"] == ["anomaly"]
    assert item["version"] == config["metadata"]["version"]
    assert item["threshold"] == pytest.approx(config["postprocess"]["threshold"])
    assert item["demo"] is False and item["weights"]
    assert item["artifact"] == "patchcore"


async def test_threshold_change_changes_verdicts_and_persists(
        tmp_path: Path, model_dir: Path, strips) -> None:
    settings = make_settings(tmp_path, model_dir)
    photo = encode(strips.good(11).image)
    config_path = model_dir / "patchcore" / "config.json"
    async with running_service(settings) as service:
        before = (await service.upload(photo)).json()
        raw = before["runs"][0]["anomaly_score"]
        # a threshold far below this photo's score makes it a defect ...
        low = raw / 10
        response = await service.client.patch("/api/v1/detectors/patchcore",
                                              json={"threshold": low})
        assert response.status_code == 200, response.text
        assert response.json()["threshold"] == pytest.approx(low)
        flagged = (await service.upload(photo)).json()
        assert flagged["verdict"] == "defect"
        assert flagged["runs"][0]["threshold"] == pytest.approx(low)
        assert flagged["anomaly_score"] == pytest.approx(10.0, rel=1e-4)
        # ... and one far above makes it ok
        high = raw * 10
        await service.client.patch("/api/v1/detectors/patchcore", json={"threshold": high})
        passed = (await service.upload(photo)).json()
        assert passed["verdict"] == "ok" and passed["findings"] == []
        # earlier records keep the threshold they were judged with
        assert (await service.client.get(f"/api/v1/inspections/{flagged['id']}")
                ).json()["runs"][0]["threshold"] == pytest.approx(low)
    assert json.loads(config_path.read_text())["postprocess"]["threshold"] == pytest.approx(high)
    async with running_service(settings) as restarted:  # survives a restart
        (item,) = (await restarted.client.get("/api/v1/detectors")).json()
        assert item["threshold"] == pytest.approx(high)


@pytest.mark.parametrize("body", [
    {"threshold": -1.0}, {"threshold": 0}, {"threshold": "high"}, {},
    {"threshold": 1.0, "label": "scratches"}, {"threshold": 2.0e91}, {"threshold": 1e-300},
])
async def test_bad_threshold_is_422_and_changes_nothing(sqlite_service: Service,
                                                        model_dir: Path, body: dict) -> None:
    config_before = (model_dir / "patchcore" / "config.json").read_text()
    (before,) = (await sqlite_service.client.get("/api/v1/detectors")).json()
    response = await sqlite_service.client.patch("/api/v1/detectors/patchcore", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    (after,) = (await sqlite_service.client.get("/api/v1/detectors")).json()
    assert after["threshold"] == before["threshold"]
    assert (model_dir / "patchcore" / "config.json").read_text() == config_before


async def test_threshold_range_comes_from_the_calibration(sqlite_service: Service,
                                                          model_dir: Path) -> None:
    """The anomaly threshold's range is a factor of 1000 around the calibrated one: both ends
    are refused (422, config.json untouched), a value just inside is saved."""
    client = sqlite_service.client
    (item,) = (await client.get("/api/v1/detectors")).json()
    low, high = item["threshold_range"]
    assert low == pytest.approx(item["threshold"] / 1000)
    assert high == pytest.approx(item["threshold"] * 1000)
    config_path = model_dir / "patchcore" / "config.json"
    saved = config_path.read_text()
    for refused in (low, high, low / 2, high * 2):
        answer = await client.patch("/api/v1/detectors/patchcore", json={"threshold": refused})
        assert answer.status_code == 422 and "outside the range" in answer.json()["detail"]
    assert config_path.read_text() == saved
    inside = await client.patch("/api/v1/detectors/patchcore", json={"threshold": high * 0.99})
    assert inside.status_code == 200, inside.text
    # the range stays put around the calibrated threshold, not the manual one
    assert inside.json()["threshold_range"] == pytest.approx([low, high])
    assert json.loads(config_path.read_text())["postprocess"]["threshold"] == pytest.approx(
        high * 0.99)


async def test_non_finite_threshold_is_422(sqlite_service: Service) -> None:
    response = await sqlite_service.client.patch(
        "/api/v1/detectors/patchcore", content=b'{"threshold": NaN}',
        headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_unknown_detector_is_404(sqlite_service: Service) -> None:
    response = await sqlite_service.client.patch("/api/v1/detectors/nonesuch",
                                                 json={"threshold": 1.0})
    assert response.status_code == 404
    assert "nonesuch" in response.json()["detail"]


async def test_choosing_detectors_per_upload(sqlite_service: Service, strips) -> None:
    photo = encode(strips.good(12).image)
    chosen = await sqlite_service.upload(photo, detectors=" patchcore , ")
    assert chosen.status_code == 201
    assert [d["name"] for d in chosen.json()["detectors"]] == ["patchcore"]
