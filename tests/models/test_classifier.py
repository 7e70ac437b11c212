"""The multi-label classifier learns, keeps its thresholds through an artifact, and its
Grad-CAM points at the defect."""

from __future__ import annotations

import numpy as np
import pytest

from kensa.models.artifacts import load_detector, save, write_config
from kensa.models.data.augment import resize_mask
from kensa.models.data.samples import Sample
from kensa.models.detectors.gradcam import grad_cam
from kensa.models.imaging import to_tensor
from kensa.models.registry import create_detector
from kensa.models.types import Task, Verdict
from tests import shapes
from tests.shapes import IMAGE, INPUT, LABELS


def make_samples(n: int, seed: int) -> list[Sample]:
    """One larger spot and a thinner line than the segmenter's shapes: labels per image."""
    return shapes.make_samples(n, seed, spots=1, spot=36, spot_gap=4, line=(6, 120),
                               spot_value=230, line_value=20)


def exact_match(detector, samples: list[Sample]) -> float:
    probs = detector.probabilities([s.image for s in samples])
    thresholds = np.array([detector.threshold_for(lab) for lab in detector.labels])
    truth = np.array([[lab in s.labels for lab in detector.labels] for s in samples])
    return float(((probs >= thresholds) == truth).all(axis=1).mean())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    train, val = make_samples(40, seed=1), make_samples(16, seed=2)
    detector = create_detector("classifier_lite0", weights="packaged", labels=LABELS,
                               input_size=INPUT, epochs=12, batch_size=8, lr=2e-3,
                               patience=12, photometric=False, seed=0)
    before = exact_match(detector, train)
    report = detector.fit(train, val, progress=False)
    return detector, train, val, before, report


def test_classifier_overfits_a_tiny_set(trained):
    detector, train, val, before, report = trained
    after = exact_match(detector, train)
    assert after >= 0.75 and after >= before + 0.4, (before, after)
    assert exact_match(detector, val) >= 0.75
    assert report["epochs_run"] >= 1 and report["history"][0]["train_loss"] > 0
    assert set(report["thresholds"]) == set(LABELS)


def test_thresholds_are_tuned_saved_and_applied_after_round_trip(trained, tmp_path):
    detector, _, val, _, _ = trained
    tuned = detector.thresholds()
    assert set(tuned) == set(LABELS) and all(0 < t < 1 for t in tuned.values())
    save(detector, tmp_path)
    loaded = load_detector(tmp_path)
    assert loaded.thresholds() == tuned
    for sample in val[:6]:
        a, b = detector(sample.image), loaded(sample.image)
        assert a.verdict == b.verdict and a.labels == b.labels
        np.testing.assert_allclose([f.score for f in a.findings],
                                   [f.score for f in b.findings], rtol=1e-5)
        assert [e.label for e in a.evidence] == [e.label for e in b.evidence]
        for ea, eb in zip(a.evidence, b.evidence, strict=True):
            np.testing.assert_allclose(ea.values, eb.values, atol=1e-4)
    # a run-time threshold change written to config.json is what the next load applies
    spot = next(s for s in val if s.labels == ("spot",) and "line" not in loaded(s.image).labels)
    line_prob = float(loaded.probabilities([spot.image])[0, LABELS.index("line")])
    loaded.set_threshold(line_prob * 0.9, "line")
    write_config(loaded, tmp_path)
    reloaded = load_detector(tmp_path)
    assert reloaded.thresholds()["line"] == pytest.approx(line_prob * 0.9)
    assert "line" in reloaded(spot.image).labels


def test_detection_carries_findings_and_gradcam_at_original_size(trained):
    detector, _, val, _, _ = trained
    sample = next(s for s in val if s.labels == ("line", "spot"))
    detection = detector(sample.image)
    assert detection.task == Task.CLASSIFY and detection.verdict == Verdict.DEFECT
    assert set(detection.labels) == {"line", "spot"}
    for finding in detection.findings:
        assert 0 <= finding.score <= 1 and finding.detector == detector.name
    assert {e.label for e in detection.layers("gradcam")} == {"line", "spot"}
    for heat in (e.values for e in detection.layers("gradcam")):
        assert heat.shape == IMAGE and heat.min() >= 0 and heat.max() <= 1


def test_gradcam_concentrates_on_the_defect(trained):
    """The last stage of a strip is 2 x 8 cells, so the evidence is compared by column band:
    the band holding the spot (one cell of margin) against the rest of the strip."""
    detector, _, _, _, _ = trained
    spots = [s for s in make_samples(24, seed=3) if s.labels == ("spot",)]
    ratios = []
    for sample in spots:
        cam = grad_cam(detector.model, to_tensor(sample.image, INPUT),
                       [[LABELS.index("spot")]])[0][0]
        columns = np.flatnonzero(resize_mask(sample.masks_inline["spot"], INPUT).any(axis=0))
        band = np.zeros(INPUT[1], bool)
        band[max(0, columns.min() - 32):columns.max() + 32] = True
        ratios.append(cam[:, band].mean() / max(cam[:, ~band].mean(), 1e-6))
    assert np.median(ratios) > 2.0, ratios


def test_verdict_review_band_sits_just_below_the_threshold():
    detector = create_detector("classifier_lite0", weights="packaged", labels=LABELS)
    detector.post.thresholds = {"spot": 0.5, "line": 0.5}
    assert detector.decide(np.array([0.6, 0.1]))[0] == Verdict.DEFECT
    verdict, hits = detector.decide(np.array([0.45, 0.1]))
    assert verdict == Verdict.REVIEW and [h[0] for h in hits] == ["spot"]
    assert detector.decide(np.array([0.2, 0.1])) == (Verdict.OK, [])
