"""PatchCore: learns good appearance from good strips only, with a bounded memory bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from kensa.models import Verdict, create_detector, get_spec
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.detectors.patchcore import greedy_coreset

SIZE = (64, 256)


@pytest.fixture(scope="module")
def generator():
    return SteelStripGenerator(size=SIZE, seed=11)


@pytest.fixture(scope="module")
def patchcore(generator):
    detector = create_detector("patchcore", **{**get_spec("patchcore").quick, "max_bank": 1500})
    report = detector.fit(generator.samples(n_good=20, n_defective=0))
    return detector, report


def test_memory_bank_is_capped_and_half_precision(patchcore):
    detector, report = patchcore
    bank = detector.model.memory_bank
    assert bank.dtype == torch.float16
    assert bank.shape[0] == report["memory_bank"] <= 1500
    assert report["patches_total"] > bank.shape[0]


def test_separates_synthetic_defects_from_good_strips(patchcore, generator):
    detector, _ = patchcore
    good = [generator.good(1000 + i).image for i in range(12)]
    bad = [generator.defective(2000 + i).image for i in range(12)]
    scores = [d.anomaly_score for d in detector.predict_batch(good + bad)]
    assert roc_auc_score([0] * 12 + [1] * 12, scores) > 0.9


def test_defect_findings_overlap_the_true_mask(patchcore, generator):
    detector, _ = patchcore
    hits = 0
    for i in range(8):
        strip = generator.defective(3000 + i)
        detection = detector(strip.image)
        truth = np.zeros(strip.image.shape[:2], dtype=bool)
        for mask in strip.masks.values():
            truth |= mask
        found = [f for f in detection.findings if f.mask is not None]
        if detection.verdict == Verdict.DEFECT and any((f.mask & truth).any() for f in found):
            hits += 1
    assert hits >= 6


def test_good_strip_heatmap_stays_below_the_pixel_threshold(patchcore, generator):
    detector, _ = patchcore
    calm = 0
    for i in range(10):
        detection = detector(generator.good(4000 + i).image)
        heat = detection.layer("heatmap")
        _low, high = heat.scale
        if (heat.values >= high).mean() < 0.01:
            calm += 1
    assert calm >= 9


def test_threshold_changes_the_verdict_without_refitting(patchcore, generator):
    detector, _ = patchcore
    image = generator.defective(5000).image
    original = detector.thresholds()["image"]
    try:
        assert detector(image).verdict == Verdict.DEFECT
        detector.set_threshold(detector(image).anomaly_score * 10)
        assert detector(image).verdict == Verdict.OK
        with pytest.raises(ValueError):
            detector.set_threshold(-1.0)
    finally:
        detector.set_threshold(original)


def test_greedy_coreset_covers_every_cluster():
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    points = torch.cat([c + torch.randn(200, 2) for c in centers])
    chosen = points[greedy_coreset(points, 4, projection_dim=64)]
    nearest = torch.cdist(centers, chosen).min(dim=1).values
    assert (nearest < 10).all()
