"""Every detector decides with ``kensa.models.decision``: its default band, read on
score / threshold (no training: thresholds are set, the inputs are chosen)."""

from __future__ import annotations

import numpy as np

from kensa.models import create_detector, get_spec
from kensa.models.decision import ANOMALY_BAND, CLASSIFY_BAND, SEGMENT_BAND
from kensa.models.types import Verdict


def test_good_only_detector_reviews_just_past_its_threshold() -> None:
    detector = create_detector("vae", **get_spec("vae").quick)
    assert tuple(detector.post.review_band) == ANOMALY_BAND
    detector.set_threshold(2.0)
    assert detector.verdict_for(1.98) == Verdict.OK
    assert detector.verdict_for(2.0) == Verdict.REVIEW
    assert detector.verdict_for(2.25) == Verdict.REVIEW
    assert detector.verdict_for(2.3) == Verdict.DEFECT


def test_classifier_reviews_just_below_its_threshold() -> None:
    detector = create_detector("classifier_lite0", weights="packaged", labels=["a", "b"],
                               **get_spec("classifier_lite0").quick)
    assert tuple(detector.post.review_band) == CLASSIFY_BAND
    detector.set_threshold(0.5)
    assert detector.decide(np.array([0.5, 0.1]))[0] == Verdict.DEFECT
    assert detector.decide(np.array([0.41, 0.39]))[0] == Verdict.REVIEW
    assert detector.decide(np.array([0.39, 0.1])) == (Verdict.OK, [])


def test_segmenter_reviews_masks_that_only_appear_just_below_its_threshold() -> None:
    detector = create_detector("segmenter_lite0", weights="packaged", labels=["a"],
                               **get_spec("segmenter_lite0").quick)
    assert tuple(detector.post.review_band) == SEGMENT_BAND
    detector.set_threshold(0.5)
    image = np.zeros((32, 32, 3), np.uint8)

    def verdict(peak: float) -> Verdict:
        prob = np.zeros((1, 32, 32), np.float32)
        prob[0, 8:16, 8:16] = peak
        return detector._detection(image, prob, 0.0).verdict

    assert verdict(0.5) == Verdict.DEFECT
    assert verdict(0.45) == Verdict.REVIEW
    assert verdict(0.39) == Verdict.OK
