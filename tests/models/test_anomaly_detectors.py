"""Good-only detectors (padim, flow, vae, inpaint): they learn the good strips, stay calm on
them, calibrate thresholds, round-trip as artifacts, and the CLI trains and evaluates them."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score

from kensa.models import create_detector, get_spec, load_detector
from kensa.models.artifacts import save
from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.training.eval_anomaly import evaluate_anomaly, split_name

SIZE = (64, 256)
KINDS = ("padim", "flow", "vae", "inpaint")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def generator():
    return SteelStripGenerator(size=SIZE, seed=11)


@pytest.fixture(scope="module", params=KINDS)
def fitted(request, generator):
    kind = request.param
    detector = create_detector(kind, **get_spec(kind).quick)
    report = detector.fit(generator.samples(n_good=40, n_defective=0))
    return detector, report


@pytest.fixture(scope="module")
def held_out(generator):
    good = [generator.good(1000 + i).image for i in range(12)]
    bad = [generator.defective(2000 + i).image for i in range(12)]
    return good, bad


def test_registered_as_good_only_anomaly_detectors():
    for kind in KINDS:
        spec = get_spec(kind)
        assert spec.task.value == "anomaly"
        assert spec.learns_from.value == "good-only"
        assert spec.quick, f"{kind} needs a quick config"


def test_separates_synthetic_defects_from_good_strips(fitted, held_out):
    detector, _ = fitted
    good, bad = held_out
    scores = [d.anomaly_score for d in detector.predict_batch(good + bad)]
    assert roc_auc_score([0] * len(good) + [1] * len(bad), scores) > 0.9


def test_good_strip_heatmaps_stay_below_the_pixel_threshold(fitted, held_out):
    detector, _ = fitted
    good, _ = held_out
    hot = []  # share of each good strip's pixels at or above the pixel threshold
    for detection in detector.predict_batch(good):
        heat = detection.layer("heatmap")
        low, high = heat.scale
        assert high == pytest.approx(detector.post.pixel_threshold) and low < high
        hot.append(float((heat.values >= high).mean()))
    hot = np.array(hot)
    assert hot.mean() < 0.01, hot
    assert (hot < 0.01).sum() >= len(good) - 2 and hot.max() < 0.05, hot


def test_good_quantile_threshold_passes_new_good_strips(fitted, held_out):
    detector, report = fitted
    good, _ = held_out
    assert report["threshold"] == detector.thresholds()["image"] > 0
    verdicts = [d.verdict.value for d in detector.predict_batch(good)]
    assert verdicts.count("defect") <= 1


def test_labelled_defects_move_the_threshold_to_the_f1_optimum(fitted, generator):
    detector, _ = fitted
    saved = detector.post.model_copy()
    try:
        cal_good = [generator.good(6000 + i).image for i in range(8)]
        cal_bad = [generator.defective(7000 + i).image for i in range(8)]
        quantile_threshold = detector.calibrate(cal_good)["threshold"]
        report = detector.calibrate(cal_good, cal_bad)
        assert report["threshold_method"] == "f1-optimum"
        scores, _ = detector.raw_scores(cal_good + cal_bad)
        y = [0] * 8 + [1] * 8
        f1_opt = f1_score(y, scores >= report["threshold"])
        assert f1_opt >= f1_score(y, scores >= quantile_threshold)
        assert f1_opt >= 0.75
    finally:
        detector.post = saved


def test_artifact_round_trip_gives_identical_outputs(fitted, held_out, tmp_path):
    detector, _ = fitted
    good, bad = held_out
    images = good[:2] + bad[:2]
    save(detector, tmp_path / detector.kind)
    loaded = load_detector(tmp_path / detector.kind)
    assert loaded.post == detector.post
    before, after = detector.predict_batch(images), loaded.predict_batch(images)
    for a, b in zip(before, after, strict=True):
        assert a.anomaly_score == b.anomaly_score
        assert a.verdict == b.verdict
        np.testing.assert_array_equal(a.layer("heatmap").values, b.layer("heatmap").values)


def test_vae_split_gradients_train_encoder_and_decoder_separately(generator):
    detector = create_detector("vae", **{**get_spec("vae").quick, "epochs": 2})
    encoder = [p.detach().clone() for p in detector.model.encoder.parameters()]
    decoder = [p.detach().clone() for p in detector.model.decoder.parameters()]
    report = detector.fit_good([generator.good(i).image for i in range(8)])
    assert report["gradient_mode"] == "split"
    assert set(report["curves"]) == {"kl", "mse"} and len(report["curves"]["kl"]) == 2
    enc_now = list(detector.model.encoder.parameters())
    dec_now = list(detector.model.decoder.parameters())
    moved_enc = any(not (a == p).all() for a, p in zip(encoder, enc_now, strict=True))
    moved_dec = any(not (a == p).all() for a, p in zip(decoder, dec_now, strict=True))
    assert moved_enc and moved_dec


def test_robust_evaluation_scores_six_pose_copies_with_moved_masks(generator):
    detector = create_detector("padim", **get_spec("padim").quick)
    detector.fit(generator.samples(n_good=16, n_defective=0))
    samples = generator.samples(n_good=4, n_defective=4)
    for s in samples:
        s.split = "test"
    report = evaluate_anomaly(detector, samples, robust=True)
    assert report["split"] == "test"
    assert (report["n_good"], report["n_defect"]) == (4, 4)
    assert report["pixel_auroc"] is not None and report["pixel_auroc"] > 0.5
    robust = report["robust"]
    assert (robust["n_good"], robust["n_defect"]) == (24, 24)
    assert robust["pixel_auroc"] is not None
    assert robust["protocol"]["copies_per_image"] == 6


def test_split_name_for_kolektor_style_evaluation():
    val = [Sample(labels=(), image=np.zeros((4, 4, 3), np.uint8), split="val")]
    train_bad = [Sample(labels=("defect",), image=np.zeros((4, 4, 3), np.uint8), split="train")]
    assert split_name(val + train_bad) == "val+train-defective"
    assert split_name(val) == "val"


def test_cli_trains_a_vae_on_a_good_folder_and_writes_curves(generator, tmp_path):
    from kensa.models.training.anomaly import train_from_args

    data = tmp_path / "good"
    data.mkdir()
    for i in range(12):
        Image.fromarray(generator.good(i).image).save(data / f"{i:03d}.png")
    out = tmp_path / "artifact"
    args = argparse.Namespace(
        detector="vae", data=data, layout="auto", out=out, name="vae-test", img_size=SIZE,
        seed=0, weights="auto", device=None, epochs=2, batch=4, augment=False,
    )
    assert train_from_args(args) == 0
    assert (out / "curve_kl.png").is_file() and (out / "curve_mse.png").is_file()
    loaded = load_detector(out)
    assert loaded.name == "vae-test"
    evaluation = loaded.metadata.metrics["evaluation"]
    assert evaluation["split"] == "val" and evaluation["n_good"] == 2
    assert loaded.metadata.training_data["n_train_good"] == 10


@pytest.mark.parametrize("kind", ["padim", "patchcore"])
def test_pose_copies_keep_turned_and_shifted_good_strips_good(kind, generator):
    """Seed 001's pose copies for feature detectors: fitted with 4 copies of each good strip,
    turned/shifted/scaled good strips raise fewer false alarms; the calibration set (plain
    good strips) is not copied."""
    from kensa.models.data.robust import POSE_CHANGES

    train = generator.samples(n_good=16, n_defective=0)
    good = [generator.good(1000 + i).image for i in range(8)]
    moved = [change.apply(image)[0] for image in good for change in POSE_CHANGES]
    false_alarms = {}
    for copies in (0, 4):
        detector = create_detector(kind, **{**get_spec(kind).quick, "pose_copies": copies})
        report = detector.fit(train)
        assert report["n_pose_copies"] == copies * report["n_fit"]
        assert report["n_calibration"] + report["n_fit"] == len(train)
        scores, _ = detector.raw_scores(moved)
        false_alarms[copies] = float(np.mean(scores > detector.post.threshold))
    assert false_alarms[4] < false_alarms[0], false_alarms


def test_pose_copies_are_made_when_read_and_the_same_every_read(generator):
    from kensa.models.data.robust import PoseCopies

    images = [generator.good(i).image for i in range(3)]
    copies = PoseCopies(images, copies=2, seed=5)
    assert len(copies) == 9 and copies[0] is images[0] and copies[-1].shape == images[2].shape
    assert np.array_equal(copies[4], copies[4])  # the same copy at every read
    assert np.array_equal(copies[3:5][1], copies[4]) and not np.array_equal(copies[3], copies[4])
    assert not np.array_equal(copies[3], images[0])  # copy 1 of image 0 is moved
    assert not np.array_equal(copies[3], PoseCopies(images, copies=2, seed=6)[3])
    with pytest.raises(IndexError):
        copies[9]
