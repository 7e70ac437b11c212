"""The Severstal recipe: the classifier gate skips segmentation on photos no class passes,
gate thresholds are tuned on validation and saved with the segmenter, pseudo-labels are kept
only where classifier and segmenter agree, and flip TTA averages flipped passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kensa.models.artifacts import load_detector, save
from kensa.models.registry import create_detector
from kensa.models.severstal import GatedSegmenter, agreement_pseudo_labels, tune_gate
from kensa.models.types import Verdict
from tests.shapes import INPUT, LABELS, make_samples

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    classifier = create_detector("classifier_lite0", weights="none", labels=LABELS,
                                 input_size=INPUT)
    segmenter = create_detector("segmenter_lite0", weights="none", labels=LABELS,
                                input_size=INPUT, decoder_channels=(32, 16, 16, 8, 8))
    classifier.post.heatmaps = False
    return classifier, segmenter


def open_all(detector):
    detector.set_threshold(1e-30)


def close_all(detector):
    detector.set_threshold(0.999999)


def test_gate_skips_segmentation_when_no_class_passes(models):
    classifier, segmenter = models
    images = [s.image for s in make_samples(3, seed=0)]
    open_all(segmenter)  # alone, the segmenter finds defects everywhere
    assert all(d.findings for d in segmenter.predict_batch(images))
    gated = GatedSegmenter(classifier, segmenter)
    close_all(classifier)
    for detection in gated.predict_batch(images):
        assert detection.verdict == Verdict.OK and not detection.findings
        assert detection.timings_ms["segmentation_skipped"] == 1.0
        assert "model" not in detection.timings_ms
    open_all(classifier)
    for detection in gated.predict_batch(images):
        assert detection.verdict == Verdict.DEFECT
        assert {f.label for f in detection.findings} == set(LABELS)
        assert "model" in detection.timings_ms
    classifier.set_threshold(0.999999, "spot")  # only 'line' passes: only its masks stay
    detection = gated.predict(images[0])
    assert {f.label for f in detection.findings} == {"line"}


def test_gate_thresholds_tuned_on_validation_and_saved(models, tmp_path):
    classifier, segmenter = models
    val = make_samples(8, seed=3)
    open_all(segmenter)  # masks everywhere: dice is best when the gate closes on good photos
    gate = tune_gate(classifier, segmenter, val)
    assert set(gate) == set(LABELS)
    assert all(0 < t < 1 for t in gate.values())
    save(segmenter, tmp_path / "seg")
    assert load_detector(tmp_path / "seg").post.gate == gate
    gated = GatedSegmenter(classifier, segmenter)
    assert gated.gate_threshold("spot") == gate["spot"]


def test_pseudo_labels_kept_only_on_agreement(models):
    classifier, segmenter = models
    images = [s.image for s in make_samples(4, seed=4)]
    open_all(classifier)
    open_all(segmenter)
    kept, dropped = agreement_pseudo_labels(classifier, segmenter, images)
    assert (len(kept), dropped) == (4, 0)
    assert all(set(s.labels) == set(LABELS) and s.meta["pseudo_label"] for s in kept)
    assert all(s.load_masks(*images[0].shape[:2])["spot"].any() for s in kept)
    close_all(classifier)  # classifier says good, segmenter draws masks: all dropped
    kept, dropped = agreement_pseudo_labels(classifier, segmenter, images)
    assert (len(kept), dropped) == (0, 4)
    close_all(segmenter)  # both say good: kept, as good samples
    kept, dropped = agreement_pseudo_labels(classifier, segmenter, images)
    assert (len(kept), dropped) == (4, 0) and all(s.is_good for s in kept)
    classifier.set_threshold(1e-30, "line")  # classifier: line; segmenter: nothing
    kept, dropped = agreement_pseudo_labels(classifier, segmenter, images)
    assert (len(kept), dropped) == (0, 4)


def test_flip_tta_averages_the_flipped_passes(models):
    classifier, segmenter = models
    image = make_samples(2, seed=5)[1].image
    segmenter.post.tta_flips = False
    plain = segmenter.probability_maps([image])[0]
    segmenter.post.tta_flips = True
    averaged = segmenter.probability_maps([image])[0]
    segmenter.post.tta_flips = False
    from kensa.models.imaging import to_tensor

    x = to_tensor(image, INPUT)
    with torch.inference_mode():
        segmenter.model.eval()
        passes = [torch.sigmoid(segmenter.model(x.flip(d))).flip(d)[0].numpy()
                  for d in ((-1,), (-2,), (-2, -1))]
    np.testing.assert_allclose(averaged, (plain + sum(passes)) / 4, atol=1e-5)
    classifier.post.tta_flips = True
    probs = classifier.probabilities([image, image[:, ::-1].copy()])
    classifier.post.tta_flips = False
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)  # flip-invariant with TTA
