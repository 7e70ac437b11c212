"""``kensa train classify|segment`` -> ``kensa eval`` -> ``kensa predict`` end to end on a tiny
generated dataset, through the real command-line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kensa.cli import main
from kensa.models.artifacts import load_detector
from kensa.models.data.synthetic import write_dataset

TRAIN_ARGS = ["--weights", "packaged", "--epochs", "2", "--img-size", "64x256", "--batch", "4",
              "--seed", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("strips"), n_good=8, n_defective=14,
                         size=(64, 256), seed=3)


def _eval_json(capsys, artifact: Path, data: Path, plots: Path) -> dict:
    capsys.readouterr()
    assert main(["eval", str(artifact), "--data", str(data), "--json",
                 "--plots", str(plots)]) == 0
    return json.loads(capsys.readouterr().out)


def _predict_json(capsys, artifact: Path, images: list[Path], overlays: Path) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", str(artifact), *map(str, images), "--overlay-dir", str(overlays),
                 "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_classify_train_eval_predict(data, tmp_path, capsys):
    out = tmp_path / "classifier"
    assert main(["train", "classify", "--data", str(data), "--out", str(out),
                 "--arch", "classifier_lite0", *TRAIN_ARGS]) == 0
    for name in ("config.json", "weights.safetensors", "metrics.json", "checkpoint.pt",
                 "curves.png", "plots/confusion_matrix.png"):
        assert (out / name).is_file(), name
    detector = load_detector(out)
    assert detector.metadata.weights["source"] == "packaged"
    splits = detector.metadata.training_data["splits"]
    assert {"train", "val", "test"} <= set(splits)
    assert {"val", "test"} <= set(detector.metadata.metrics)
    assert len(detector.metadata.training_data["fit"]["history"]) == 2

    report = _eval_json(capsys, out, data, tmp_path / "plots")
    assert report["split"] == "test" and report["n_images"] == splits["test"]["total"]
    for key in ("accuracy", "macro_f1", "per_class", "roc_auc", "confusion_matrix"):
        assert key in report, key
    assert report["accuracy"] == detector.metadata.metrics["test"]["accuracy"]
    assert set(report["per_class"]) == set(detector.labels)
    for row in report["per_class"].values():
        assert {"precision", "recall", "f1", "support"} <= set(row)
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()

    images = sorted((data / "images").glob("*.png"))[:2]
    results = _predict_json(capsys, out, images, tmp_path / "overlays")
    assert [r["image"] for r in results] == [str(p) for p in images]
    for result in results:
        assert result["verdict"] in {"ok", "review", "defect"}
        assert Path(result["overlay"]).is_file()
        assert set(result["heatmaps"]) <= set(result["labels"])


def test_segment_train_resume_eval_predict(data, tmp_path, capsys):
    out = tmp_path / "segmenter"
    args = ["train", "segment", "--data", str(data), "--out", str(out),
            "--arch", "segmenter_lite0", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    first = load_detector(out).metadata.training_data["fit"]["history"]
    args[args.index("--epochs") + 1] = "2"
    assert main([*args, "--resume"]) == 0
    history = load_detector(out).metadata.training_data["fit"]["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0] == first[0]  # the resumed run continued, it did not start over

    report = _eval_json(capsys, out, data, tmp_path / "plots")
    for key in ("dice", "iou", "per_class", "dice_defective", "image_level"):
        assert key in report, key
    assert 0.0 <= report["dice"] <= 1.0
    assert set(report["per_class"]) == set(load_detector(out).labels)

    defect = sorted((data / "images").glob("defect_*.png"))[:1]
    [result] = _predict_json(capsys, out, defect, tmp_path / "overlays")
    assert Path(result["overlay"]).is_file()
    for finding in result["findings"]:
        assert finding["area_px"] > 0 and len(finding["bbox"]) == 4


def test_train_refuses_random_init_without_being_asked(data, tmp_path):
    """B3 has no packaged weights: offline, ``--weights packaged`` must fail loudly."""
    with pytest.raises(SystemExit, match="no packaged weights"):
        main(["train", "classify", "--data", str(data), "--out", str(tmp_path / "b3"),
              "--arch", "classifier", "--weights", "packaged", "--epochs", "1"])


def _mmseg_dataset(root: Path) -> Path:
    """Synthetic strips in the mmseg layout (img_dir/ann_dir per split, class_names.txt)."""
    from PIL import Image

    from kensa.models.data.synthetic import DEFECT_CLASSES, SteelStripGenerator, class_index_mask

    gen = SteelStripGenerator(size=(64, 256), seed=5)
    root.mkdir(parents=True)
    (root / "class_names.txt").write_text("\n".join(["_background_", *DEFECT_CLASSES]) + "\n")
    index = 0
    for split, n in (("train", 10), ("val", 3), ("test", 3)):
        for _ in range(n):
            strip = gen.defective(index) if index % 3 else gen.good(index)
            index += 1
            for folder, array in (("img_dir", strip.image),
                                  ("ann_dir", class_index_mask(strip.masks, gen.size))):
                (root / folder / split).mkdir(parents=True, exist_ok=True)
                suffix = "jpg" if folder == "img_dir" else "png"
                Image.fromarray(array).save(root / folder / split / f"{strip.name}.{suffix}")
    return root


def test_train_segment_with_the_mmseg_layout(tmp_path):
    """The CLI once kept its own layout list and refused ``--layout mmseg``."""
    data = _mmseg_dataset(tmp_path / "mmseg")
    out = tmp_path / "seg-mmseg"
    args = ["train", "segment", "--data", str(data), "--layout", "mmseg", "--out", str(out),
            "--arch", "segmenter_lite0", *TRAIN_ARGS]
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    detector = load_detector(out)
    assert detector.metadata.training_data["layout"] == "mmseg"
    assert set(detector.labels) <= {"pitted_surface", "crazing", "scratches", "patches"}


def _choices(parser, *path: str) -> dict[str, list[str]]:
    """The option -> choices of the subcommand at ``path`` of the kensa parser."""
    for name in path:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return {a.option_strings[0]: list(a.choices) for a in parser._actions
            if a.option_strings and a.choices is not None}


def test_every_cli_choice_comes_from_its_registry():
    from kensa.cli import build_parser
    from kensa.models.data import layouts
    from kensa.models.data.layouts import list_layouts, register_layout
    from kensa.models.registry import list_detectors

    kinds = {spec.kind: spec for spec in list_detectors()}
    for task in ("classify", "segment"):
        choices = _choices(build_parser(), "train", task)
        assert choices["--layout"] == ["auto", *list_layouts()]
        assert choices["--arch"] == [k for k, s in kinds.items() if s.task.value == task]
    anomaly = _choices(build_parser(), "train", "anomaly")
    assert anomaly["--detector"] == [k for k, s in kinds.items()
                                     if s.learns_from.value == "good-only"]
    assert _choices(build_parser(), "eval")["--layout"] == ["auto", *list_layouts()]

    @register_layout("test-only-layout")
    def _load(root):  # a layout registered from outside the CLI shows up in its choices
        raise NotImplementedError

    try:
        assert "test-only-layout" in _choices(build_parser(), "train", "segment")["--layout"]
    finally:
        layouts._LOADERS.pop("test-only-layout")


def test_unknown_choices_are_refused_by_the_parser(tmp_path, capsys):
    for bad in (["--layout", "nonsense"], ["--arch", "classifier"]):
        with pytest.raises(SystemExit) as exc:
            main(["train", "segment", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                  *bad])
        assert exc.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
