"""The detector contract, checked for every registered detector kind."""

from __future__ import annotations

import numpy as np
import pytest

from kensa.models import Detection, Task, Verdict, create_detector, list_detectors, load_detector
from kensa.models.artifacts import save
from kensa.models.backbones import WeightsUnavailable
from kensa.models.base import Detector
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.evidence import evidence_kinds
from kensa.models.registry import get_spec, register_detector
from kensa.models.types import LearnsFrom

SIZE = (64, 256)
SPECS = [s for s in list_detectors() if s.cls.__module__.startswith("kensa.")]
"""kensa's own kinds (a test module may register one of its own, tested where it lives)."""


def test_builtin_detectors_are_registered():
    kinds = {spec.kind for spec in SPECS}
    assert "patchcore" in kinds
    for spec in SPECS:
        assert spec.task in set(Task)
        assert spec.learns_from in set(LearnsFrom)
        assert len(spec.input_size) == 2
        assert spec.description


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(KeyError, match="patchcore"):
        get_spec("no-such-detector")


def test_a_kind_cannot_be_registered_twice_by_another_class():
    spec = get_spec("patchcore")
    with pytest.raises(ValueError, match="already registered"):
        register_detector("patchcore", task="anomaly", learns_from="good-only")(
            type("Other", (spec.cls,), {})
        )


def _training_data(spec, generator: SteelStripGenerator):
    if spec.learns_from == LearnsFrom.GOOD_ONLY:
        return generator.samples(n_good=12, n_defective=0), None
    samples = generator.samples(n_good=8, n_defective=16)
    return samples[::2] + samples[1::2][:4], samples[1::2][4:]


def _create(spec) -> Detector:
    try:
        return create_detector(spec.kind, **spec.quick)
    except WeightsUnavailable:  # no hub and no packaged weights: random init, asked for
        detector = create_detector(spec.kind, weights="none", **spec.quick)
        assert detector.metadata.weights["source"] == "none"
        return detector


@pytest.fixture(scope="module", params=[s.kind for s in SPECS])
def fitted(request, tmp_path_factory):
    spec = get_spec(request.param)
    generator = SteelStripGenerator(size=SIZE, seed=7)
    detector = _create(spec)
    assert detector.metadata.weights["source"] in {"hub", "packaged", "file", "none"}
    train, val = _training_data(spec, generator)
    detector.fit(train, val)
    directory = save(detector, tmp_path_factory.mktemp(spec.kind))
    return spec, detector, directory, generator


def test_detection_has_the_contracted_shape(fitted):
    spec, detector, _, generator = fitted
    image = generator.defective(100).image
    detection = detector(image)
    assert isinstance(detection, Detection)
    assert detection.detector == detector.name
    assert detection.task == spec.task
    assert detection.verdict in set(Verdict)
    for finding in detection.findings:
        assert finding.detector == detector.name
        assert np.isfinite(finding.score)
        if finding.mask is not None:
            assert finding.mask.shape == image.shape[:2]
            assert finding.mask.dtype == bool
            assert finding.area_px == int(finding.mask.sum())
        if finding.bbox is not None:
            x0, y0, x1, y1 = finding.bbox
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    for layer in detection.evidence:
        assert layer.kind in evidence_kinds()
        assert layer.values.shape == image.shape[:2] and layer.values.dtype == np.float32
        low, high = layer.scale
        assert low < high
    for heatmap in detection.layers("gradcam"):
        assert heatmap.values.min() >= 0.0 and heatmap.values.max() <= 1.0


def test_artifact_round_trip_gives_identical_outputs(fitted):
    _, detector, directory, generator = fitted
    loaded = load_detector(directory)
    assert loaded.kind == detector.kind
    assert loaded.version == detector.version != "unsaved"
    assert loaded.thresholds() == detector.thresholds()
    assert loaded.metadata.weights == detector.metadata.weights
    for image in (generator.good(200).image, generator.defective(201).image):
        a, b = detector(image), loaded(image)
        assert a.verdict == b.verdict
        assert [(f.label, f.bbox) for f in a.findings] == [(f.label, f.bbox) for f in b.findings]
        np.testing.assert_allclose([f.score for f in a.findings], [f.score for f in b.findings],
                                   rtol=1e-5)
        if a.anomaly_score is not None:
            assert a.anomaly_score == pytest.approx(b.anomaly_score, rel=1e-5)
        assert [(e.kind, e.label) for e in a.evidence] == [(e.kind, e.label) for e in b.evidence]
        for ea, eb in zip(a.evidence, b.evidence, strict=True):
            np.testing.assert_allclose(ea.values, eb.values, rtol=1e-5, atol=1e-4)


def test_describe_reports_weights_and_threshold(fitted):
    spec, detector, _, _ = fitted
    info = detector.describe()
    assert info["name"] == detector.name and info["task"] == spec.task.value
    assert info["weights"]["source"] in {"hub", "packaged", "file", "none"}
    assert info["threshold"] is not None
