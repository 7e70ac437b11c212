"""A new detector kind with a new evidence kind, registered from tests alone, served end to end.

The ``edges`` detector marks strong horizontal intensity steps; its ``edges`` evidence kind
paints them green. Neither backend/ nor client/ knows either name.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from backend_testing import Service, encode, make_settings, running_service
from PIL import Image
from torch import nn

from kensa.models import artifacts
from kensa.models.backbones import WeightsOrigin
from kensa.models.base import Detector
from kensa.models.data.samples import Sample
from kensa.models.decision import verdict_for
from kensa.models.evidence import blend, register_evidence_kind
from kensa.models.registry import create_detector, register_detector
from kensa.models.types import Detection, EvidenceLayer, Task, Verdict

pytestmark = pytest.mark.anyio
H, W = 128, 256
EDGE_COLOR = np.array([0.0, 255.0, 0.0], np.float32)


@register_evidence_kind("edges")
def draw_edges(canvas: np.ndarray, layer: EvidenceLayer, t: np.ndarray) -> None:
    blend(canvas, EDGE_COLOR, np.where(t >= 0.5, 1.0, 0.0))


class EdgeModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(40.0))


@register_detector("edges_test", task=Task.ANOMALY, learns_from="good-only",
                   description="test only: horizontal intensity steps")
class EdgeDetector(Detector):
    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        return EdgeModule(), WeightsOrigin("none", "no weights")

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None,
            **options: Any) -> dict[str, Any]:
        return {}

    def predict(self, image: np.ndarray) -> Detection:
        gray = image.astype(np.float32).mean(axis=2)
        steps = np.zeros_like(gray)
        steps[:, 1:] = np.abs(np.diff(gray, axis=1))
        threshold = float(self.model.threshold)
        score = float(steps.max())
        return Detection(detector=self.name, version=self.version, task=Task.ANOMALY,
                         verdict=verdict_for(score, threshold, (1.0, 1.0)),
                         anomaly_score=score, threshold=threshold,
                         evidence=[EvidenceLayer("edges", None, steps, (0.0, 2 * threshold))])


def photo() -> np.ndarray:
    image = np.full((H, W, 3), 100, np.uint8)
    image[:, W // 2:] = 200  # one strong vertical edge at the middle column
    return image


@pytest.fixture
async def edges_service(tmp_path: Path) -> AsyncIterator[Service]:
    model_dir = tmp_path / "models"
    artifacts.save(create_detector("edges_test", weights="none"), model_dir / "edges_test")
    async with running_service(make_settings(tmp_path, model_dir)) as service:
        yield service


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


async def test_new_evidence_kind_is_stored_listed_served_and_drawn(edges_service: Service
                                                                   ) -> None:
    image = photo()
    response = await edges_service.upload(encode(image))
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["verdict"] == Verdict.DEFECT
    assert record["evidence"] == [{
        "kind": "edges", "label": None, "detector": "edges_test",
        "url": f"/api/v1/inspections/{record['id']}/evidence/0"}]
    assert edges_service.count("evidence_map") == 1
    with edges_service.engine.connect() as conn:
        kind, low, high, key = conn.exec_driver_sql(
            "SELECT kind, low, high, map_key FROM evidence_map").one()
    assert (kind, low, high) == ("edges", 0.0, 80.0)
    assert any(p.name.startswith(Path(key).name) for p in edges_service.files())  # the blob

    served = await edges_service.client.get(record["evidence"][0]["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    gray = png(served.content)
    assert gray.shape == (H, W) and gray.dtype == np.uint8
    assert gray[:, W // 2].min() == 255 and gray[:, : W // 2].max() == 0  # 100 / 80 clips
    missing = await edges_service.client.get(f"/api/v1/inspections/{record['id']}/evidence/1")
    assert missing.status_code == 404

    overlay = await edges_service.client.get(record["overlay_url"], params={"layers": "edges"})
    assert overlay.status_code == 200, overlay.text
    drawn = png(overlay.content).astype(int)
    changed = np.abs(drawn - image.astype(int)).sum(axis=2) > 0
    assert changed[:, W // 2].all()
    assert not changed[:, : W // 2].any() and not changed[:, W // 2 + 1:].any()
    bare = await edges_service.client.get(record["overlay_url"], params={"layers": ""})
    assert np.array_equal(png(bare.content).astype(int), image.astype(int))
    unknown = await edges_service.client.get(record["overlay_url"], params={"layers": "xray"})
    assert unknown.status_code == 422 and "edges" in unknown.text
