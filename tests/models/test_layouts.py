"""Dataset layouts, Kaggle RLE, grouped stratified splits and near-duplicate grouping.

Every fixture is a tiny dataset written to tmp_path from generated images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kensa.models.data.layouts import (
    NEU_VALIDATION_SPLIT,
    Dataset,
    dedupe_groups,
    detect_layout,
    load_dataset,
    split_by_group,
)
from kensa.models.data.rle import rle_decode, rle_encode
from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import DEFECT_CLASSES, SteelStripGenerator, write_dataset

RNG = np.random.default_rng(0)


def _image(path: Path, shape=(24, 32), value: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.full(shape, value, np.uint8) if value is not None
           else RNG.integers(0, 255, shape, dtype=np.uint8))
    Image.fromarray(arr).save(path)
    return path


def _mask(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _labels_by_name(ds: Dataset) -> dict[str, tuple[str, ...]]:
    return {s.path.name: s.labels for s in ds.samples}


# --------------------------------------------------------------------------- RLE


def test_rle_decode_hand_made_kaggle_cases():
    # 3 rows x 2 columns; pixels are numbered down each column first, starting at 1:
    #   1 4
    #   2 5
    #   3 6
    assert rle_decode("1 2", (3, 2)).tolist() == [[True, False], [True, False], [False, False]]
    assert rle_decode("3 3", (3, 2)).tolist() == [[False, True], [False, True], [True, False]]
    assert rle_decode("4 1 6 1", (3, 2)).tolist() == [[False, True], [False, False],
                                                      [False, True]]
    assert not rle_decode("", (3, 2)).any()
    assert not rle_decode(float("nan"), (3, 2)).any()


def test_rle_encode_hand_made_kaggle_cases():
    mask = np.zeros((4, 3), bool)
    mask[1:3, 0] = True  # pixels 2, 3
    mask[:, 2] = True  # pixels 9-12
    assert rle_encode(mask) == "2 2 9 4"
    full = np.ones((256, 1600), bool)
    assert rle_encode(full) == f"1 {256 * 1600}"
    assert rle_encode(np.zeros((5, 5), bool)) == ""


def test_rle_round_trips_random_masks():
    rng = np.random.default_rng(1)
    for shape in [(256, 1600), (7, 5), (1, 9)]:
        mask = rng.random(shape) > 0.7
        assert np.array_equal(rle_decode(rle_encode(mask), shape), mask)


def test_rle_rejects_malformed_strings():
    with pytest.raises(ValueError):
        rle_decode("1 2 3", (3, 3))
    with pytest.raises(ValueError):
        rle_decode("8 5", (3, 3))


# --------------------------------------------------------------------------- layouts


def test_folders_layout_without_splits(tmp_path):
    for i in range(6):
        _image(tmp_path / "OK" / f"g{i}.png")
        _image(tmp_path / "scratch" / f"s{i}.jpg")
        _image(tmp_path / "dent" / f"d{i}.bmp")
    (tmp_path / "dent" / "notes.txt").write_text("not an image")
    assert detect_layout(tmp_path) == "folders"
    ds = load_dataset(tmp_path, seed=1)
    assert ds.layout == "folders" and ds.classes == ("dent", "scratch")
    labels = _labels_by_name(ds)
    assert len(labels) == 18 and labels["g0.png"] == () and labels["s3.jpg"] == ("scratch",)
    assert set(ds.splits) == {"train", "val", "test"}
    assert all(s.image is None and s.path is not None for s in ds.samples)  # lazy
    for split in ("train", "val", "test"):  # stratified: every label in every split
        assert {s.labels for s in ds.split(split)} == {(), ("scratch",), ("dent",)}


def test_folders_layout_with_split_folders(tmp_path):
    for split in ("train", "valid", "test"):
        for i in range(2):
            _image(tmp_path / split / "good" / f"{split}{i}.png")
            _image(tmp_path / split / "crack" / f"{split}c{i}.png")
    ds = load_dataset(tmp_path)
    assert ds.split_source == "layout"
    assert sorted(s.path.name for s in ds.split("val")) == ["valid0.png", "valid1.png",
                                                            "validc0.png", "validc1.png"]
    assert {s.labels for s in ds.split("test")} == {(), ("crack",)}


def test_masks_layout_binary(tmp_path):
    square = np.zeros((24, 32), np.uint8)
    square[4:10, 5:9] = 255
    _image(tmp_path / "images" / "a.jpg")
    _mask(tmp_path / "masks" / "a.png", square)
    _image(tmp_path / "images" / "b.jpg")
    _mask(tmp_path / "masks" / "b_mask.png", np.zeros((24, 32)))
    _image(tmp_path / "images" / "c.jpg")  # no mask file: good
    assert detect_layout(tmp_path) == "masks"
    ds = load_dataset(tmp_path, val_fraction=0, test_fraction=0)
    by_name = {s.path.name: s for s in ds.samples}
    assert ds.classes == ("defect",) and ds.mask_kind == "pixels"
    assert by_name["a.jpg"].labels == ("defect",)
    assert by_name["b.jpg"].labels == () and by_name["c.jpg"].labels == ()
    masks = by_name["a.jpg"].load_masks(24, 32)
    assert np.array_equal(masks["defect"], square > 0)
    assert by_name["c.jpg"].has_masks and by_name["c.jpg"].load_masks(24, 32) == {}
    resized = by_name["a.jpg"].load_masks(48, 64)["defect"]
    assert resized.shape == (48, 64) and resized.sum() == 4 * square.astype(bool).sum()


def test_masks_layout_class_indexed_with_splits(tmp_path):
    (tmp_path / "classes.txt").write_text("rust\nhole\n")  # no background line: rust = 1
    for split in ("train", "test"):
        for i in range(3):
            arr = np.zeros((24, 32), np.uint8)
            arr[:5, :5] = 1
            if i:
                arr[10:15, 10:20] = 2
            _image(tmp_path / split / "images" / f"{split}{i}.png")
            _mask(tmp_path / split / "masks" / f"{split}{i}.png", arr)
    assert detect_layout(tmp_path) == "masks"
    ds = load_dataset(tmp_path, val_fraction=0.34)
    assert ds.classes == ("rust", "hole")
    assert ds.split_source == "layout+carved val"
    assert len(ds.split("test")) == 3 and len(ds.split("val")) == 1
    sample = next(s for s in ds.samples if s.path.name == "test2.png")
    assert sample.labels == ("rust", "hole")
    masks = sample.load_masks(24, 32)
    assert masks["rust"].sum() == 25 and masks["hole"].sum() == 50


def test_mmseg_layout_like_neu_seg(tmp_path):
    (tmp_path / "class_names.txt").write_text("_background_\nInclusions\nPatches\nScratches\n")
    for split, names in {"train": ["000001", "000002"], "val": ["000003"],
                         "test": ["000004"]}.items():
        for k, name in enumerate(names):
            arr = np.zeros((20, 20), np.uint8)
            arr[2:6, 2:6] = 1 + k
            arr[10:12, :] = 3
            _image(tmp_path / "img_dir" / split / f"{name}.jpg", (20, 20))
            _mask(tmp_path / "ann_dir" / split / f"{name}.png", arr)
    assert detect_layout(tmp_path) == "mmseg"
    ds = load_dataset(tmp_path)
    assert ds.classes == ("Inclusions", "Patches", "Scratches")
    assert [len(ds.split(n)) for n in ("train", "val", "test")] == [2, 1, 1]
    labels = _labels_by_name(ds)
    assert labels["000002.jpg"] == ("Patches", "Scratches")
    masks = next(s for s in ds.samples if s.path.stem == "000001").load_masks(20, 20)
    assert masks["Inclusions"].sum() == 16 and masks["Scratches"].sum() == 40


def test_severstal_layout(tmp_path):
    shape = (16, 40)
    m1 = np.zeros(shape, bool)
    m1[3:7, 10:20] = True
    m3 = np.zeros(shape, bool)
    m3[0, :] = True
    rows = ["ImageId,ClassId,EncodedPixels",
            f"a.jpg,1,{rle_encode(m1)}", f"a.jpg,3,{rle_encode(m3)}",
            f"b.jpg,2,{rle_encode(m3)}"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        _image(tmp_path / "train_images" / name, shape)
    assert detect_layout(tmp_path) == "severstal"
    ds = load_dataset(tmp_path)
    labels = _labels_by_name(ds)
    assert labels == {"a.jpg": ("pitted_surface", "scratches"), "b.jpg": ("crazing",),
                      "c.jpg": (), "d.jpg": ()}
    a = next(s for s in ds.samples if s.path.name == "a.jpg")
    masks = a.load_masks(*shape)
    assert np.array_equal(masks["pitted_surface"], m1) and np.array_equal(masks["scratches"], m3)
    assert next(s for s in ds.samples if s.path.name == "c.jpg").load_masks(*shape) == {}


def test_severstal_old_csv_format(tmp_path):
    (tmp_path / "train.csv").write_text(
        "ImageId_ClassId,EncodedPixels\nx.jpg_1,\nx.jpg_4,1 5\ny.jpg_1,\n")
    _image(tmp_path / "train_images" / "x.jpg", (8, 8))
    _image(tmp_path / "train_images" / "y.jpg", (8, 8))
    ds = load_dataset(tmp_path, layout="severstal")
    assert _labels_by_name(ds) == {"x.jpg": ("patches",), "y.jpg": ()}


def test_mvtec_layout(tmp_path):
    for i in range(4):
        _image(tmp_path / "train" / "good" / f"{i:03d}.png")
    _image(tmp_path / "test" / "good" / "000.png")
    _image(tmp_path / "test" / "crack" / "000.png")
    gt = np.zeros((24, 32), np.uint8)
    gt[5:8, 5:8] = 255
    _mask(tmp_path / "ground_truth" / "crack" / "000_mask.png", gt)
    assert detect_layout(tmp_path) == "mvtec"
    ds = load_dataset(tmp_path, val_fraction=0.25)
    assert ds.classes == ("crack",)
    assert {s.split for s in ds.samples if s.path.parent.name == "good"
            and s.path.parent.parent.name == "train"} == {"train", "val"}
    test = ds.split("test")
    assert sorted(s.labels for s in test) == [(), ("crack",)]
    crack = next(s for s in test if s.labels)
    assert crack.load_masks(24, 32)["crack"].sum() == 9


def _voc(path: Path, boxes: list[tuple[str, int, int, int, int]], size=(20, 20)) -> None:
    objects = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height>"
                    f"</size>{objects}</annotation>")


def test_neu_layout_with_boxes_and_validation_images(tmp_path):
    for cls in ("crazing", "rolled-in_scale", "patches"):
        for i in range(1, 8):
            _image(tmp_path / "IMAGES" / f"{cls}_{i}.jpg", (20, 20))
            _voc(tmp_path / "ANNOTATIONS" / f"{cls}_{i}.xml", [(cls, 1, 1, 10, 5)])
        _image(tmp_path / "Validation_Images" / f"{cls}_99.jpg", (20, 20))
        _voc(tmp_path / "Validation_Annotations" / f"{cls}_99.xml", [(cls, 2, 2, 4, 4)])
    _voc(tmp_path / "ANNOTATIONS" / "patches_1.xml",
         [("patches", 1, 1, 10, 5), ("inclusion", 11, 11, 20, 20)])
    assert detect_layout(tmp_path) == "neu"
    ds = load_dataset(tmp_path)
    assert ds.classes == ("crazing", "inclusion", "patches", "rolled-in_scale")
    assert ds.mask_kind == "boxes"
    assert len(ds.split(NEU_VALIDATION_SPLIT)) == 3
    assert sum(len(ds.split(n)) for n in ("train", "val", "test")) == 21
    labels = _labels_by_name(ds)
    assert labels["rolled-in_scale_3.jpg"] == ("rolled-in_scale",)
    assert labels["patches_1.jpg"] == ("patches", "inclusion")
    masks = next(s for s in ds.samples if s.path.name == "patches_1.jpg").load_masks(20, 20)
    assert masks["patches"][0:5, 0:10].all() and masks["patches"].sum() == 50
    assert masks["inclusion"].sum() == 100
    doubled = next(s for s in ds.samples if s.path.name == "crazing_2.jpg").load_masks(40, 40)
    assert doubled["crazing"].sum() == 4 * 50
    assert "validation_images" in ds.summary()["splits"]


def test_neu_layout_flat_folder(tmp_path):
    for cls in ("inclusion", "scratches"):
        for i in range(3):
            _image(tmp_path / f"{cls}_{i}.bmp", (12, 12))
    assert detect_layout(tmp_path) == "neu"
    ds = load_dataset(tmp_path, val_fraction=0, test_fraction=0.34)
    assert ds.classes == ("inclusion", "scratches") and ds.mask_kind is None
    assert len(ds.split("test")) == 2


def test_yolo_layout_polygons_and_empty_files(tmp_path):
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: ['crack', 'dent']\n")
    shape = (40, 20)
    for split in ("train", "val"):
        for i in range(3):
            _image(tmp_path / "images" / split / f"{i:03d}.jpg", shape)
    labels = tmp_path / "labels"
    (labels / "train").mkdir(parents=True)
    (labels / "val").mkdir(parents=True)
    # a square polygon covering columns 5-14 and rows 10-29 of the 20x40 image
    (labels / "train" / "000.txt").write_text("0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n")
    (labels / "train" / "001.txt").write_text("")  # empty = good
    (labels / "train" / "002.txt").write_text("1 0.5 0.5 0.5 0.5\n")  # a box (detection row)
    (labels / "val" / "000.txt").write_text(" \n")  # whitespace only = good; 001, 002 missing
    assert detect_layout(tmp_path) == "yolo"
    ds = load_dataset(tmp_path, test_fraction=0)
    assert ds.classes == ("crack", "dent")
    assert [len(ds.split(n)) for n in ("train", "val")] == [3, 3]
    by_key = {s.group: s for s in ds.samples}
    assert by_key["images/train/000"].labels == ("crack",)
    assert by_key["images/train/001"].labels == () and by_key["images/val/002"].labels == ()
    poly = by_key["images/train/000"].load_masks(*shape)["crack"]
    rows, cols = np.nonzero(poly)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 30, 5, 15)
    box = by_key["images/train/002"].load_masks(*shape)["dent"]
    assert box.sum() == 10 * 20 and box[10:30, 5:15].all()


def test_yolo_layout_default_and_classes_txt_names(tmp_path):
    _image(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 0.9\n")
    assert load_dataset(tmp_path, val_fraction=0, test_fraction=0).classes == ("defect",)
    (tmp_path / "classes.txt").write_text("pore\n")
    assert load_dataset(tmp_path, val_fraction=0, test_fraction=0).classes == ("pore",)


def test_detect_layout_rejects_unknown_folders(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError):
        detect_layout(tmp_path)
    _image(tmp_path / "bottle" / "train" / "good" / "000.png")
    _image(tmp_path / "bottle" / "test" / "good" / "000.png")
    (tmp_path / "bottle" / "ground_truth").mkdir()
    with pytest.raises(ValueError, match="one category"):
        detect_layout(tmp_path)  # an MVTec root: one category must be chosen
    assert detect_layout(tmp_path / "bottle") == "mvtec"
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing")


# --------------------------------------------------------------------------- splits


def _grouped_samples(n_groups: int = 60) -> list[Sample]:
    labels = [(), ("a",), ("b",)]
    return [Sample(labels=labels[g % 3], image=np.zeros((2, 2, 3), np.uint8), group=f"g{g}")
            for g in range(n_groups) for _ in range(1 + g % 4)]


def test_stratified_group_split_never_leaks_a_group():
    for seed in range(5):
        samples = _grouped_samples()
        split_by_group(samples, seed=seed, val_fraction=0.2, test_fraction=0.2)
        splits_of_group: dict[str, set] = {}
        for s in samples:
            splits_of_group.setdefault(s.group, set()).add(s.split)
        assert all(len(v) == 1 for v in splits_of_group.values())
        groups_in = {n: {s.group for s in samples if s.split == n} for n in ("train", "val",
                                                                          "test")}
        assert [len(groups_in[n]) for n in ("train", "val", "test")] == [36, 12, 12]
        for name in ("val", "test"):  # stratified: 4 groups of each label
            labels = [next(s.labels for s in samples if s.group == g) for g in groups_in[name]]
            assert sorted(labels).count(()) == 4 and labels.count(("a",)) == 4


def test_split_is_deterministic_per_seed():
    a, b, c = _grouped_samples(), _grouped_samples(), _grouped_samples()
    split_by_group(a, seed=3)
    split_by_group(b, seed=3)
    split_by_group(c, seed=4)
    assert [s.split for s in a] == [s.split for s in b]
    assert [s.split for s in a] != [s.split for s in c]


def test_split_handles_rare_labels():
    rare = Sample(labels=("rare",), image=np.zeros((2, 2, 3)), group="lonely")
    samples = [*_grouped_samples(30), rare]
    split_by_group(samples, seed=0)
    assert {s.split for s in samples} == {"train", "val", "test"}


# --------------------------------------------------------------------------- dedupe


def test_dedupe_groups_rotated_and_flipped_twins(tmp_path):
    gen = SteelStripGenerator(size=(64, 64), seed=5)
    bases = [gen.good(i).image[..., 0] for i in range(3)]
    bases += [gen.defective(i, labels=("scratches",)).image[..., 0] for i in range(3)]
    samples, expected = [], []
    for b, base in enumerate(bases):
        for k, variant in enumerate([base, np.rot90(base), np.fliplr(base), np.rot90(base, 3).T]):
            if b >= 4 and k >= 1:
                break  # some bases without twins
            path = tmp_path / f"{b}_{k}.jpg"
            Image.fromarray(np.ascontiguousarray(variant)).save(path, quality=90)
            samples.append(Sample(path=path, group=path.stem))
            expected.append(b)
    n_groups = dedupe_groups(samples, progress=False)
    assert n_groups == len(bases)
    for s, b in zip(samples, expected, strict=True):
        for t, c in zip(samples, expected, strict=True):
            assert (s.group == t.group) == (b == c), (s.path.name, t.path.name)


def test_load_dataset_dedupe_resplits_leaking_layout_splits(tmp_path):
    (tmp_path / "class_names.txt").write_text("_background_\nspot\n")
    gen = SteelStripGenerator(size=(64, 64), seed=2)
    for b in range(8):
        base = gen.defective(b, labels=("pitted_surface",)).image[..., 0]
        mask = np.zeros((64, 64), np.uint8)
        mask[:8, :8] = 1
        for k, split in enumerate(("train", "test")):  # every base image leaks to test
            variant = np.ascontiguousarray(np.rot90(base, k))
            _mask(tmp_path / "img_dir" / split / f"{b}.png", variant)
            _mask(tmp_path / "ann_dir" / split / f"{b}.png", mask)
    plain = load_dataset(tmp_path)
    assert plain.group_leaks() == 0  # groups are per file without dedupe
    ds = load_dataset(tmp_path, dedupe=True, val_fraction=0.25, test_fraction=0.25)
    assert ds.group_leaks() == 0 and ds.split_source == "seeded by group"
    assert len({s.group for s in ds.samples}) == 8
    assert [len({s.group for s in ds.split(n)}) for n in ("train", "val", "test")] == [4, 2, 2]
    assert any("leaked 8 groups" in note for note in ds.notes)


# --------------------------------------------------------------------------- synthetic + summary


def test_write_dataset_round_trips_through_load_dataset(tmp_path):
    size = (64, 160)
    root = write_dataset(tmp_path / "synth", n_good=4, n_defective=8, size=size, seed=7)
    assert detect_layout(root) == "masks"
    ds = load_dataset(root, seed=0)
    assert ds.layout == "masks" and ds.classes == DEFECT_CLASSES
    gen = SteelStripGenerator(size=size, seed=7)
    strips = {s.name: s for s in [gen.good(i) for i in range(4)]
              + [gen.defective(i) for i in range(8)]}
    assert len(ds.samples) == 12
    for sample in ds.samples:
        strip = strips[sample.path.stem]
        assert sample.labels == tuple(c for c in DEFECT_CLASSES if c in strip.labels)
        assert np.array_equal(sample.load_image(), strip.image)
        masks = sample.load_masks(*size)
        assert set(masks) == set(strip.masks)
        for label, mask in strip.masks.items():
            assert np.array_equal(masks[label], mask)


def test_summary_is_json_and_counts_add_up(tmp_path):
    root = write_dataset(tmp_path / "synth", n_good=6, n_defective=12, size=(32, 64), seed=1)
    ds = load_dataset(root)
    summary = json.loads(json.dumps(ds.summary()))
    assert summary["layout"] == "masks" and summary["root"] == str(root)
    assert summary["classes"] == list(DEFECT_CLASSES)
    assert sum(v["total"] for v in summary["splits"].values()) == 18
    assert sum(v["good"] for v in summary["splits"].values()) == 6
    assert summary["n_groups"] == 18
