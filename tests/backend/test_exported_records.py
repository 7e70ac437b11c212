"""A record made by an exported detector (ONNX Runtime) says so per run, and matches the record
the eager detector makes of the same photos within the export's parity tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backend_testing import encode, make_settings, running_service

from kensa.models.export.parity import TOLERANCES

pytestmark = pytest.mark.anyio
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported_patchcore(patchcore_artifact: Path, tmp_path_factory: pytest.TempPathFactory
                       ) -> Path:
    from kensa.models.training.export import export_artifact

    out = tmp_path_factory.mktemp("exported") / "patchcore-onnx"
    manifest = export_artifact(patchcore_artifact, "onnx", out)
    assert manifest["parity"]["passed"], manifest["parity"]["failures"]
    return out


async def _records(tmp_path: Path, artifact: Path, photos: list[bytes]) -> tuple[list, dict]:
    tmp_path.mkdir()
    empty = tmp_path / "models"
    empty.mkdir()
    settings = make_settings(tmp_path, empty, extra_models=[artifact])
    async with running_service(settings) as svc:
        records = []
        for photo in photos:
            response = await svc.upload(photo)
            assert response.status_code == 201, response.text
            again = await svc.client.get(f"/api/v1/inspections/{response.json()['id']}")
            assert again.json()["runs"] == response.json()["runs"]  # stored, not just echoed
            records.append(response.json())
        (detector,) = (await svc.client.get("/api/v1/detectors")).json()
    return records, detector


async def test_exported_record_matches_the_eager_one(tmp_path: Path, patchcore_artifact: Path,
                                                    exported_patchcore: Path, strips) -> None:
    photos = [encode(strips.defective(i).image if i % 2 else strips.good(i).image)
              for i in range(6)]
    eager, eager_detector = await _records(tmp_path / "eager", patchcore_artifact, photos)
    served, served_detector = await _records(tmp_path / "onnx", exported_patchcore, photos)
    assert eager_detector["runtime"] == "torch"
    assert served_detector["runtime"] == "onnxruntime"
    assert {r["verdict"] for r in eager} >= {"defect"}  # the comparison covers a defect
    for a, b in zip(served, eager, strict=True):
        assert [r["runtime"] for r in a["runs"]] == ["onnxruntime"]
        assert [r["runtime"] for r in b["runs"]] == ["torch"]
        assert (a["verdict"], a["labels"]) == (b["verdict"], b["labels"])
        assert a["detectors"] == b["detectors"]
        assert np.isclose(a["runs"][0]["anomaly_score"], b["runs"][0]["anomaly_score"],
                          rtol=TOLERANCES["score_rel"], atol=0)
        assert a["anomaly_score"] == pytest.approx(b["anomaly_score"],
                                                   rel=TOLERANCES["score_rel"])
        assert len(a["findings"]) == len(b["findings"])
        for fa, fb in zip(a["findings"], b["findings"], strict=True):
            assert fa["label"] == fb["label"]
            assert fa["score"] == pytest.approx(fb["score"], rel=TOLERANCES["score_rel"])
