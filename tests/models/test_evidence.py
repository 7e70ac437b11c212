"""models.evidence (overlays on a fixed scale, every layer generic, the codec) and
models.decision (one verdict policy for every task)."""

from __future__ import annotations

import numpy as np
import pytest

from kensa.contract.constants import LABEL_COLORS, label_color
from kensa.models.decision import ANOMALY_BAND, CLASSIFY_BAND, SEGMENT_BAND, verdict_for
from kensa.models.evidence import (
    decode_layer,
    decode_mask,
    encode_detection,
    encode_layer,
    encode_mask,
    evidence_kinds,
    overlay_layers,
    register_evidence_kind,
    render_overlay,
)
from kensa.models.types import Detection, EvidenceLayer, Finding, Task, Verdict

H, W = 64, 128


def photo() -> np.ndarray:
    return np.full((H, W, 3), 128, np.uint8)


def anomaly(values: np.ndarray, findings=(), scale=(1.0, 3.0)) -> Detection:
    return Detection(detector="pc", version="1", task=Task.ANOMALY, verdict=Verdict.OK,
                     findings=list(findings), anomaly_score=float(values.max()), threshold=3.0,
                     evidence=[EvidenceLayer("heatmap", "anomaly", values, scale)])


def test_good_part_below_scale_low_is_untouched() -> None:
    calm = anomaly(np.random.default_rng(0).uniform(0.0, 1.0, (H, W)).astype(np.float32))
    assert np.array_equal(np.asarray(render_overlay(photo(), [calm])), photo())


def test_heatmap_uses_the_fixed_scale_not_per_image_min_max() -> None:
    weak = np.full((H, W), 1.2, np.float32)
    weak[:, : W // 2] = 1.0
    strong = weak.copy()
    strong[10:20, 10:20] = 50.0  # one hot spot must not rescale the rest
    out_weak = np.asarray(render_overlay(photo(), [anomaly(weak)])).astype(int)
    out_strong = np.asarray(render_overlay(photo(), [anomaly(strong)])).astype(int)
    assert np.array_equal(out_weak[40:, 80:], out_strong[40:, 80:])
    at_high = np.asarray(render_overlay(photo(), [anomaly(np.full((H, W), 3.0, np.float32))]))
    way_above = np.asarray(render_overlay(photo(), [anomaly(np.full((H, W), 50.0, np.float32))]))
    assert np.array_equal(at_high, way_above)  # above `high` saturates
    assert np.abs(out_strong[15, 15] - 128).sum() > np.abs(out_weak[30, 100] - 128).sum()


def test_masks_boxes_and_colours() -> None:
    mask = np.zeros((H, W), bool)
    mask[20:40, 30:70] = True
    finding = Finding(label="scratches", score=0.9, detector="seg", area_px=int(mask.sum()),
                      bbox=(30, 20, 70, 40), mask=mask)
    det = Detection(detector="seg", version="1", task=Task.SEGMENT, verdict=Verdict.DEFECT,
                    findings=[finding])
    masks_only = np.asarray(render_overlay(photo(), [det], layers=["masks"])).astype(int)
    color = np.array(LABEL_COLORS["scratches"])
    assert np.array_equal(masks_only[20, 50], color)  # outline in the label colour
    inside = masks_only[30, 50]
    assert np.abs(inside - 128).sum() > 0 and np.argmax(inside) == np.argmax(color)
    assert np.array_equal(masks_only[5, 5], [128, 128, 128])  # outside untouched
    with_box = np.asarray(render_overlay(photo(), [det], layers=["boxes"])).astype(int)
    assert not np.array_equal(with_box, photo())
    assert np.array_equal(with_box[45, 5], [128, 128, 128])


def test_gradcam_and_other_labels() -> None:
    heat = np.zeros((H // 2, W // 2), np.float32)  # any size: resized to the photo
    heat[5:10, 5:10] = 1.0
    det = Detection(detector="cls", version="1", task=Task.CLASSIFY, verdict=Verdict.DEFECT,
                    findings=[Finding(label="rolled_in_scale", score=0.8, detector="cls")],
                    evidence=[EvidenceLayer("gradcam", "rolled_in_scale", heat)])
    out = np.asarray(render_overlay(photo(), [det], layers=["gradcam"])).astype(int)
    assert np.abs(out[15, 15] - 128).sum() > 30 and np.array_equal(out[50, 100], [128] * 3)
    assert np.array_equal(render_overlay(photo(), [det], layers=[]), photo())
    assert label_color("rolled_in_scale") == label_color("rolled_in_scale")
    assert label_color("rolled_in_scale") != label_color("inclusion")
    assert set(LABEL_COLORS) == {"pitted_surface", "crazing", "scratches", "patches",
                                 "anomaly"}


def test_unknown_layer_and_bad_kind_names_are_errors() -> None:
    with pytest.raises(ValueError, match="xray"):
        render_overlay(photo(), [], layers=["xray"])
    with pytest.raises(ValueError, match="finding layer"):
        register_evidence_kind("masks")
    with pytest.raises(ValueError, match="must match"):
        register_evidence_kind("Not A Name")
    with pytest.raises(ValueError, match="already registered"):
        register_evidence_kind("heatmap")(lambda canvas, layer, t: None)
    assert {"heatmap", "gradcam"} <= set(evidence_kinds())
    assert overlay_layers()[-2:] == ("masks", "boxes")


def test_layer_codec_round_trip_is_within_one_step_of_the_scale() -> None:
    rng = np.random.default_rng(1)
    values = rng.uniform(0.5, 4.0, (H, W)).astype(np.float32)
    layer = EvidenceLayer("heatmap", "anomaly", values, (1.0, 3.0))
    stored = encode_layer(layer)
    assert (stored.kind, stored.label, stored.low, stored.high) == ("heatmap", "anomaly", 1.0, 3.0)
    back = decode_layer(stored)
    assert back.values.shape == (H, W) and back.scale == (1.0, 3.0)
    step = (3.0 - 1.0) / 255
    np.testing.assert_allclose(back.values, np.clip(values, 1.0, 3.0), atol=step / 2 + 1e-6)
    drawn = np.asarray(render_overlay(photo(), [anomaly(values)])).astype(int)
    redrawn = np.asarray(render_overlay(photo(), [anomaly(back.values)])).astype(int)
    assert np.abs(drawn - redrawn).max() <= 2  # lossless enough for display


def test_mask_codec_round_trip_and_detection_encoding() -> None:
    mask = np.zeros((H, W), bool)
    mask[3:9, 60:100] = True
    assert np.array_equal(decode_mask(encode_mask(mask)), mask)
    assert encode_mask(None) is None and encode_mask(np.zeros((H, W), bool)) is None
    det = anomaly(np.zeros((H, W), np.float32), findings=[
        Finding("anomaly", 1.2, "pc", int(mask.sum()), (60, 3, 100, 9), mask),
        Finding("anomaly", 1.1, "pc")])
    encoded = encode_detection(det)
    assert [m is None for m in encoded.finding_masks] == [False, True]
    assert [layer.kind for layer in encoded.layers] == ["heatmap"]


def test_evidence_layer_validates_its_shape_and_scale() -> None:
    with pytest.raises(ValueError, match="HxW"):
        EvidenceLayer("heatmap", None, np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="low < high"):
        EvidenceLayer("heatmap", None, np.zeros((2, 2)), (1.0, 1.0))


# -- one verdict policy ----------------------------------------------------------------------------
@pytest.mark.parametrize(("band", "cases"), [
    # good-only: a part just past the threshold is review, defect from 1.15 x threshold
    (ANOMALY_BAND, [(0.99, Verdict.OK), (1.0, Verdict.REVIEW), (1.1, Verdict.REVIEW),
                    (1.15, Verdict.DEFECT), (3.0, Verdict.DEFECT)]),
    # labelled tasks: at or past the threshold is a defect, just below it review
    (CLASSIFY_BAND, [(0.79, Verdict.OK), (0.8, Verdict.REVIEW), (0.99, Verdict.REVIEW),
                     (1.0, Verdict.DEFECT)]),
    (SEGMENT_BAND, [(0.79, Verdict.OK), (0.8, Verdict.REVIEW), (1.0, Verdict.DEFECT)]),
])
def test_every_task_reads_its_band_on_score_over_threshold(band, cases) -> None:
    for ratio, verdict in cases:
        assert verdict_for(ratio * 0.5, 0.5, band) == verdict, (band, ratio)
        assert verdict_for(ratio * 20.0, 20.0, band) == verdict, (band, ratio)


def test_a_band_of_zero_width_means_no_review_and_bad_inputs_are_errors() -> None:
    assert verdict_for(0.99, 1.0, (1.0, 1.0)) == Verdict.OK
    assert verdict_for(1.0, 1.0, (1.0, 1.0)) == Verdict.DEFECT
    with pytest.raises(ValueError):
        verdict_for(1.0, 0.0, ANOMALY_BAND)
    with pytest.raises(ValueError):
        verdict_for(1.0, 1.0, (1.2, 1.0))
