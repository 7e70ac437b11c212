"""Good-only detectors learning newly confirmed good photos without a full refit: PatchCore's
memory bank grows by the continued coreset, PaDiM's Gaussians absorb the images exactly as a
refit on everything would, and the update survives an artifact round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kensa.models import create_detector, get_spec, load_detector
from kensa.models.artifacts import save
from kensa.models.data.synthetic import SteelStripGenerator

pytestmark = pytest.mark.usefixtures("one_thread")
GEN = SteelStripGenerator(size=(64, 256), seed=5)


def fitted(kind: str, n: int = 12):
    detector = create_detector(kind, **get_spec(kind).quick)
    detector.fit(GEN.samples(n_good=n, n_defective=0))
    return detector


def score(detector, image: np.ndarray) -> float:
    return float(detector.predict(image).anomaly_score)


def test_patchcore_update_takes_a_confirmed_photo_below_the_threshold(tmp_path) -> None:
    detector = fitted("patchcore")
    threshold = detector.post.threshold
    # a strip the machine flags, which a person judged acceptable
    flagged = next(s.image for s in (GEN.defective(i) for i in range(20))
                   if score(detector, s.image) > threshold * 1.2)
    others = [GEN.good(500 + i).image for i in range(4)]
    before = [score(detector, image) for image in others]
    bank = detector.model.memory_bank.shape[0]

    report = detector.update([flagged])

    assert detector.post.threshold == threshold  # no calibration images: the threshold stays
    assert report["memory_bank"] == bank + report["patches_added"] > bank
    assert score(detector, flagged) < threshold
    after = [score(detector, image) for image in others]
    assert all(a <= b + 1e-5 for a, b in zip(after, before, strict=True))  # a bigger bank
    assert detector.metadata.training_data["n_good_updates"] == 1

    save(detector, tmp_path / "pc")
    loaded = load_detector(tmp_path / "pc")
    assert loaded.model.memory_bank.shape == detector.model.memory_bank.shape
    assert score(loaded, flagged) == pytest.approx(score(detector, flagged), rel=1e-5)


def test_patchcore_update_recalibrates_on_given_good_images() -> None:
    detector = fitted("patchcore")
    report = detector.update([GEN.good(700).image],
                             calibration=[GEN.good(800 + i).image for i in range(4)])
    assert report["n_calibration"] == 4 and report["threshold"] == detector.post.threshold
    assert detector.post.threshold_method != "manual"


def test_padim_update_equals_a_refit_on_everything() -> None:
    first = [GEN.good(i).image for i in range(8)]
    new = [GEN.good(100 + i).image for i in range(3)]
    spec = get_spec("padim")
    updated = create_detector("padim", **spec.quick)
    updated.fit_good(first)
    updated.metadata.training_data["n_good_fit"] = len(first)
    updated.update_good(new)
    refit = create_detector("padim", **spec.quick)
    refit.fit_good(first + new)
    torch.testing.assert_close(updated.model.mean, refit.model.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(updated.model.inv_covariance, refit.model.inv_covariance,
                               rtol=2e-3, atol=2e-3)


def test_padim_update_with_pose_copies_counts_every_copy() -> None:
    """With pose copies the Gaussians count the copies too: an update adds the new photos'
    copies and equals a refit on every image and copy."""
    first = [GEN.good(i).image for i in range(8)]
    new = [GEN.good(100 + i).image for i in range(3)]
    config = {**get_spec("padim").quick, "pose_copies": 2}
    updated = create_detector("padim", **config)
    updated.fit_good(updated.with_pose_copies(first))
    updated.metadata.training_data.update(n_good_fit=8, n_fit_samples=24)
    updated.update(new)
    assert updated.metadata.training_data["n_fit_samples"] == 33
    assert updated.metadata.training_data["n_good_fit"] == 11
    refit = create_detector("padim", **config)
    refit.fit_good([*refit.with_pose_copies(first), *refit.with_pose_copies(new)])
    torch.testing.assert_close(updated.model.mean, refit.model.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(updated.model.inv_covariance, refit.model.inv_covariance,
                               rtol=2e-3, atol=2e-3)


def test_padim_update_calms_the_confirmed_photo() -> None:
    detector = fitted("padim")
    photo = GEN.defective(3).image
    before = score(detector, photo)
    detector.update([photo])
    assert score(detector, photo) < before
    assert detector.metadata.training_data["n_good_fit"] == 11  # 10 fitted (2 calibrate) + 1


def test_detectors_without_incremental_learning_say_so() -> None:
    detector = create_detector("vae", **get_spec("vae").quick)
    with pytest.raises(NotImplementedError, match="incrementally"):
        detector.update([GEN.good(0).image])
    with pytest.raises(ValueError):
        fitted("patchcore", n=4).update([])
