"""models.visualize: overlays on a fixed scale, calm on good parts, every layer generic."""

from __future__ import annotations

import numpy as np
import pytest

from kensa.models.types import Detection, Finding, Task, Verdict
from kensa.models.visualize import LABEL_COLORS, label_color, render_overlay

H, W = 64, 128


def photo() -> np.ndarray:
    return np.full((H, W, 3), 128, np.uint8)


def anomaly(values: np.ndarray, findings=(), map_range=(1.0, 3.0)) -> Detection:
    return Detection(detector="pc", version="1", task=Task.ANOMALY, verdict=Verdict.OK,
                     findings=list(findings), anomaly_score=float(values.max()), threshold=3.0,
                     anomaly_map=values, map_range=map_range)


def test_good_part_below_map_low_is_untouched() -> None:
    calm = anomaly(np.random.default_rng(0).uniform(0.0, 1.0, (H, W)).astype(np.float32))
    out = np.asarray(render_overlay(photo(), [calm]))
    assert np.array_equal(out, photo())


def test_heatmap_uses_the_fixed_range_not_per_image_min_max() -> None:
    weak = np.full((H, W), 1.2, np.float32)
    weak[:, : W // 2] = 1.0
    strong = weak.copy()
    strong[10:20, 10:20] = 50.0  # one hot spot must not rescale the rest
    out_weak = np.asarray(render_overlay(photo(), [anomaly(weak)])).astype(int)
    out_strong = np.asarray(render_overlay(photo(), [anomaly(strong)])).astype(int)
    assert np.array_equal(out_weak[40:, 80:], out_strong[40:, 80:])
    # above `high` saturates: 50 and 3 look the same
    at_high = np.asarray(render_overlay(photo(), [anomaly(np.full((H, W), 3.0, np.float32))]))
    way_above = np.asarray(render_overlay(photo(), [anomaly(np.full((H, W), 50.0, np.float32))]))
    assert np.array_equal(at_high, way_above)
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
                    heatmaps={"rolled_in_scale": heat})
    out = np.asarray(render_overlay(photo(), [det], layers=["gradcam"])).astype(int)
    assert np.abs(out[15, 15] - 128).sum() > 30 and np.array_equal(out[50, 100], [128] * 3)
    assert np.array_equal(render_overlay(photo(), [det], layers=[]), photo())
    assert label_color("rolled_in_scale") == label_color("rolled_in_scale")
    assert label_color("rolled_in_scale") != label_color("inclusion")
    assert set(LABEL_COLORS) == {"pitted_surface", "crazing", "scratches", "patches",
                                 "anomaly"}


def test_unknown_layer_is_an_error() -> None:
    with pytest.raises(ValueError, match="xray"):
        render_overlay(photo(), [], layers=["xray"])
