"""The U-Net segmenter learns masks, tunes and keeps its post-processing through an artifact,
and its findings carry masks at the original size that round-trip through Kaggle RLE."""

from __future__ import annotations

import numpy as np
import pytest

from kensa.models.artifacts import load_detector, save, write_config
from kensa.models.data.rle import rle_decode, rle_encode
from kensa.models.registry import create_detector
from kensa.models.training.eval_supervised import evaluate_segmenter
from kensa.models.types import Task, Verdict
from tests.shapes import IMAGE, INPUT, LABELS, make_samples

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    train, val = make_samples(24, seed=1), make_samples(12, seed=2)
    detector = create_detector("segmenter_lite0", weights="packaged", labels=LABELS,
                               input_size=INPUT, decoder_channels=(64, 32, 16, 16, 8),
                               epochs=12, batch_size=4, lr=3e-3, patience=12,
                               photometric=False, seed=0)
    before = evaluate_segmenter(detector, train, progress=False)
    report = detector.fit(train, val, progress=False)
    return detector, train, val, before, report


def test_segmenter_overfits_a_tiny_set(trained):
    detector, train, val, before, report = trained
    after = evaluate_segmenter(detector, train, progress=False)
    assert after["dice_defective"] >= 0.7, after
    assert after["dice_defective"] >= before["dice_defective"] + 0.4, (before, after)
    assert evaluate_segmenter(detector, val, progress=False)["dice_defective"] >= 0.6
    assert report["history"][-1]["val_dice"] > report["history"][0]["val_dice"] or \
        report["best_epoch"] > 1


def test_postprocessing_is_tuned_saved_and_applied_after_round_trip(trained, tmp_path):
    detector, _, val, _, report = trained
    assert set(report["postprocess"]) == set(LABELS)
    assert set(detector.post.classes) == set(LABELS)
    save(detector, tmp_path)
    loaded = load_detector(tmp_path)
    assert loaded.post == detector.post and loaded.thresholds() == detector.thresholds()
    for sample in val[:6]:
        a, b = detector(sample.image), loaded(sample.image)
        assert a.verdict == b.verdict
        assert [(f.label, f.bbox, f.area_px) for f in a.findings] == \
            [(f.label, f.bbox, f.area_px) for f in b.findings]
        for fa, fb in zip(a.findings, b.findings, strict=True):
            assert np.array_equal(fa.mask, fb.mask)
    # the saved post-processing is what runs: a minimum area above any mask empties a class
    sample = next(s for s in val if "spot" in s.labels and "spot" in loaded(s.image).labels)
    loaded.post.classes["spot"].min_area = 0.9
    write_config(loaded, tmp_path)
    assert "spot" not in load_detector(tmp_path)(sample.image).labels


def test_findings_carry_masks_at_original_size_and_export_to_rle(trained):
    detector, _, val, _, _ = trained
    sample = next(s for s in val if s.labels == ("line", "spot"))
    detection = detector(sample.image)
    assert detection.task == Task.SEGMENT and detection.verdict == Verdict.DEFECT
    assert set(detection.labels) == {"line", "spot"}
    for finding in detection.findings:
        assert finding.mask.shape == IMAGE and finding.mask.dtype == bool
        assert finding.area_px == int(finding.mask.sum()) > 0
        x0, y0, x1, y1 = finding.bbox
        ys, xs = np.nonzero(finding.mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0 < finding.score <= 1
    for label, mask in detector.label_masks(detection, IMAGE).items():
        assert np.array_equal(rle_decode(rle_encode(mask), IMAGE), mask)
        truth = sample.masks_inline[label]
        assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.5
    good = next(s for s in make_samples(8, seed=5) if not s.labels)
    assert detector(good.image).verdict != Verdict.DEFECT


def test_input_sides_must_be_multiples_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        create_detector("segmenter_lite0", weights="packaged", input_size=(200, 200))


def test_a_noisy_map_gives_bounded_findings_with_the_same_union_mask():
    """Thousands of specks (an untrained or confused model): at most ``max_findings`` per label,
    the strongest kept apart, the rest merged; areas and the union mask unchanged."""
    detector = create_detector("segmenter_lite0", weights="none", input_size=INPUT,
                               labels=list(LABELS))
    detector.post.max_findings = 5
    rng = np.random.default_rng(0)
    prob = np.where(rng.random((64, 96)) < 0.3, rng.uniform(0.6, 0.95, (64, 96)), 0.0)
    prob[0::2, :] = 0.0  # many separate components
    prob[10:20, 10:30] = 0.99  # one clear defect, the strongest
    mask = prob >= 0.5
    findings = detector._findings(LABELS[0], prob, mask)
    assert len(findings) == 5
    union = np.zeros_like(mask)
    for finding in findings:
        assert not (union & finding.mask).any()  # no pixel in two findings
        union |= finding.mask
        assert finding.area_px == int(finding.mask.sum())
        rows, cols = np.nonzero(finding.mask)
        assert finding.bbox == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert finding.score == pytest.approx(float(prob[finding.mask].max()))
    assert (union == mask).all()
    assert findings[0].score == pytest.approx(0.99) and findings[0].area_px >= 10 * 20 // 2
    few = detector._findings(LABELS[0], prob[10:20, 10:30], mask[10:20, 10:30])
    assert len(few) == 1 and few[0].area_px == 200
