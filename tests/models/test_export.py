"""Exported detectors (ONNX Runtime, OpenVINO) against eager torch on synthetic strips."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from kensa.models.artifacts import load_detector, save
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.export.parity import TOLERANCES, compare, parity_images
from kensa.models.export.serve import MANIFEST
from kensa.models.registry import create_detector, get_spec
from kensa.models.training.export import export_artifact

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

ANOMALY_KINDS = ("patchcore", "padim", "flow", "vae", "inpaint")
SUPERVISED_KINDS = ("classifier_lite0", "segmenter_lite0")
FAST_FIT = {"flow": {"epochs": 1}, "vae": {"epochs": 2}, "inpaint": {"epochs": 1}}


def _fitted(kind: str, tmp_path):
    spec = get_spec(kind)
    detector = create_detector(kind, weights="none", **{**spec.quick, **FAST_FIT.get(kind, {})})
    if spec.task.value == "anomaly":
        detector.fit(SteelStripGenerator(size=(64, 256), seed=0).samples(6, 0))
    else:  # untrained weights, calibrated decisions: parity is about the graph, not accuracy
        detector.set_threshold(0.5)
    return save(detector, tmp_path / kind)


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("kind", ANOMALY_KINDS + SUPERVISED_KINDS)
def test_exported_detector_matches_torch(kind, fmt, tmp_path, one_thread):
    source = _fitted(kind, tmp_path)
    manifest = export_artifact(source, fmt, tmp_path / f"{kind}-{fmt}")
    assert manifest["parity"]["passed"], manifest["parity"]["failures"]
    served = load_detector(tmp_path / f"{kind}-{fmt}")
    assert served.runtime == manifest["runtime"] == served.describe()["runtime"]
    eager = load_detector(source)
    assert eager.describe()["runtime"] == "torch"
    report = compare(eager, served, parity_images(n_good=1, n_defective=2, seed=7))
    assert report["passed"], report["failures"]
    for key, value in report["measured"].items():
        if key.endswith("_max") or key.endswith("_over_scale"):
            assert value <= max(TOLERANCES.values())


def test_tampered_graph_or_failed_parity_falls_back_to_torch(tmp_path, caplog, one_thread):
    source = _fitted("padim", tmp_path)
    out = tmp_path / "padim-onnx"
    export_artifact(source, "onnx", out)
    assert load_detector(out).runtime == "onnxruntime"
    graph = out / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-100] ^= 0xFF  # perturb a weight
    graph.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        detector = load_detector(out)
    assert detector.runtime == "torch" and "changed since its parity check" in caplog.text
    image = SteelStripGenerator(size=(64, 256), seed=3).samples(1, 0)[0].load_image()
    assert np.isclose(detector.predict(image).anomaly_score,
                      load_detector(source).predict(image).anomaly_score)
    export_artifact(source, "onnx", out)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["parity"]["passed"] = False
    (out / MANIFEST).write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_detector(out).runtime == "torch"
    assert "parity check failed" in caplog.text


def test_kensa_predict_and_export_cli_on_exported_artifact(tmp_path, capsys, one_thread):
    from PIL import Image

    from kensa.cli import main

    source = _fitted("patchcore", tmp_path)
    assert main(["export", str(source), "--format", "openvino"]) == 0
    capsys.readouterr()
    image = SteelStripGenerator(size=(64, 256), seed=5).samples(0, 1)[0].load_image()
    Image.fromarray(image).save(tmp_path / "strip.png")
    assert main(["predict", f"{source}-openvino", str(tmp_path / "strip.png"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert main(["predict", str(source), str(tmp_path / "strip.png"), "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)
    assert exported[0]["verdict"] == eager[0]["verdict"]
    assert exported[0]["anomaly_score"] == pytest.approx(eager[0]["anomaly_score"], rel=1e-3)
