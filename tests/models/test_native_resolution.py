"""Native-resolution good-only detectors (PatchCore, PaDiM, flow scoring tiles of the photo at
its own size): they separate synthetic defects, give maps at each photo's own size, round-trip
as artifacts, and export refuses them clearly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kensa.models import create_detector, get_spec, load_detector
from kensa.models.artifacts import save
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.training.export import export_artifact

SIZE = (128, 512)
TILE = {"size": 128, "overlap": 32}
KINDS = ("patchcore", "padim", "flow")
NATIVE = {"patchcore": {"max_bank": 2048}, "padim": {}, "flow": {"epochs": 6}}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def generator():
    return SteelStripGenerator(size=SIZE, seed=11)


@pytest.fixture(scope="module", params=KINDS)
def fitted(request, generator):
    kind = request.param
    config = {**get_spec(kind).quick, **NATIVE[kind], "native_resolution": True, "tile": TILE}
    detector = create_detector(kind, **config)
    report = detector.fit(generator.samples(n_good=16, n_defective=0))
    return detector, report


@pytest.fixture(scope="module")
def held_out(generator):
    good = [generator.good(1000 + i).image for i in range(8)]
    bad = [generator.defective(2000 + i).image for i in range(8)]
    return good, bad


def test_native_variants_separate_synthetic_defects(fitted, held_out):
    detector, _ = fitted
    good, bad = held_out
    scores = [d.anomaly_score for d in detector.predict_batch(good + bad)]
    assert roc_auc_score([0] * len(good) + [1] * len(bad), scores) > 0.9


def test_maps_are_at_each_photos_own_size(fitted, held_out, generator):
    detector, _ = fitted
    good, _ = held_out
    assert detector.config.input_size != SIZE  # the input size is not used in native mode
    other = SteelStripGenerator(size=(96, 300), seed=3).good(0).image  # off the 32-grid
    for image in (good[0], other):
        heat = detector.predict(image).layer("heatmap").values
        assert heat.shape == image.shape[:2]
        assert np.isfinite(heat).all()


def test_native_artifact_round_trip_gives_identical_outputs(fitted, held_out, tmp_path):
    detector, _ = fitted
    good, bad = held_out
    images = good[:2] + bad[:2]
    save(detector, tmp_path / detector.kind)
    loaded = load_detector(tmp_path / detector.kind)
    assert loaded.config.native_resolution and loaded.config.tile == detector.config.tile
    assert loaded.post == detector.post
    for a, b in zip(detector.predict_batch(images), loaded.predict_batch(images), strict=True):
        assert a.anomaly_score == b.anomaly_score and a.verdict == b.verdict
        np.testing.assert_array_equal(a.layer("heatmap").values, b.layer("heatmap").values)


def test_export_refuses_native_variants_before_writing(fitted, tmp_path):
    detector, _ = fitted
    source = save(detector, tmp_path / f"{detector.kind}-native")
    out = tmp_path / "exported"
    with pytest.raises(ValueError, match="native resolution"):
        export_artifact(source, "onnx", out)
    assert not out.exists()


def test_top_k_image_score_is_the_mean_of_the_highest_pixels(generator):
    detector = create_detector("padim", **get_spec("padim").quick, score_top_k=3)
    import torch

    maps = torch.tensor([[[0.0, 5.0], [1.0, 3.0]]])
    assert detector.image_scores(maps).item() == pytest.approx(3.0)


def _write_good_folder(generator, folder, n: int = 10) -> None:
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        Image.fromarray(generator.good(3000 + i).image).save(folder / f"{i:03d}.png")


def test_cli_trains_native_patchcore_and_records_it(generator, tmp_path):
    from kensa.cli import main

    data, out = tmp_path / "good", tmp_path / "artifact"
    _write_good_folder(generator, data)
    code = main(["train", "anomaly", "--data", str(data), "--out", str(out),
                 "--detector", "patchcore", "--native-resolution", "--tile", "128:32",
                 "--set", "max_bank=512", "--set", "score_top_k=4", "--augment"])
    assert code == 0
    loaded = load_detector(out)
    assert loaded.config.native_resolution is True and loaded.config.pose_copies == 4
    fit = loaded.metadata.metrics["fit"]
    assert fit["n_pose_copies"] == 4 * fit["n_fit"]
    assert (loaded.config.tile.size, loaded.config.tile.overlap) == (128, 32)
    assert loaded.config.score_top_k == 4 and loaded.config.max_bank == 512
    photo = generator.defective(4000).image
    assert loaded.predict(photo).evidence[0].values.shape == photo.shape[:2]


@pytest.mark.parametrize(("extra", "message"), [
    (["--detector", "vae", "--native-resolution"], "does not implement native_resolution"),
    (["--tile", "128:32"], "--tile needs --native-resolution"),
    (["--native-resolution", "--tile", "100:32"], "multiples of 32"),
    (["--set", "no_such_field=3"], "has no config field no_such_field"),
])
def test_cli_refuses_bad_native_options_before_writing(generator, tmp_path, capsys, extra,
                                                       message):
    from kensa.cli import main

    data, out = tmp_path / "good", tmp_path / "artifact"
    _write_good_folder(generator, data, n=4)
    with pytest.raises(SystemExit) as exited:
        main(["train", "anomaly", "--data", str(data), "--out", str(out), *extra])
    assert message in str(exited.value.code) + capsys.readouterr().err
    assert not out.exists()
