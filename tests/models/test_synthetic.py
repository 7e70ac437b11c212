"""The synthetic steel-strip generator: determinism, exact masks, labels, sizes, files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kensa.models.data.synthetic import (
    CONTRAST_THRESHOLD,
    DEFECT_CLASSES,
    SteelStripGenerator,
    write_dataset,
)

SIZE = (128, 384)


@pytest.fixture(scope="module")
def gen() -> SteelStripGenerator:
    return SteelStripGenerator(size=SIZE, seed=3)


def test_same_seed_and_index_give_identical_strips(gen):
    again = SteelStripGenerator(size=SIZE, seed=3)
    for i in range(3):
        a, b = gen.defective(i), again.defective(i)
        assert np.array_equal(a.image, b.image)
        assert a.labels == b.labels
        assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.labels)
        assert np.array_equal(gen.good(i).image, again.good(i).image)


def test_different_index_or_seed_give_different_strips(gen):
    assert not np.array_equal(gen.good(0).image, gen.good(1).image)
    assert not np.array_equal(gen.defective(0).image, gen.defective(4).image)
    other = SteelStripGenerator(size=SIZE, seed=4)
    assert not np.array_equal(gen.good(0).image, other.good(0).image)


@pytest.mark.parametrize("label", DEFECT_CLASSES)
def test_mask_is_exactly_the_altered_pixels(gen, label):
    for i in range(6):
        strip = gen.defective(i, labels=(label,))
        diff = np.abs(strip.image.astype(np.int16) - strip.clean).max(axis=2)
        union = strip.masks[label]
        assert np.array_equal(union, diff >= CONTRAST_THRESHOLD)
        assert not diff[~union].any(), "pixels outside the mask must be untouched"


def test_good_strips_have_no_masks_and_are_their_own_clean_version(gen):
    strip = gen.good(5)
    assert strip.labels == () and strip.masks == {}
    assert np.array_equal(strip.image, strip.clean)


@pytest.mark.parametrize("label", DEFECT_CLASSES)
def test_defects_are_visible_and_varied(gen, label):
    areas, contrasts, centres = [], [], []
    for i in range(8):
        strip = gen.defective(i, labels=(label,))
        mask = strip.masks[label]
        diff = np.abs(strip.image[..., 0].astype(np.int16) - strip.clean[..., 0])
        areas.append(int(mask.sum()))
        contrasts.append(float(diff[mask].mean()))
        centres.append(np.argwhere(mask).mean(axis=0))
    assert min(areas) >= 30, f"{label}: some defect is too small to see ({areas})"
    assert min(contrasts) >= 10, f"{label}: mean contrast too low ({contrasts})"
    assert max(areas) > 1.5 * min(areas), "sizes should vary"
    spread = np.ptp(np.array(centres), axis=0) / np.array(SIZE)
    assert spread.max() > 0.25, f"positions should vary ({spread})"


def test_labels_match_masks_and_multi_label_masks_do_not_overlap(gen):
    seen_multi = False
    for i in range(40):
        strip = gen.defective(i)
        assert strip.labels, "a defective strip has at least one label"
        assert set(strip.masks) == set(strip.labels)
        assert all(m.dtype == bool and m.shape == SIZE and m.any() for m in strip.masks.values())
        if len(strip.labels) > 1:
            seen_multi = True
            total = sum(m.astype(int) for m in strip.masks.values())
            assert total.max() == 1
    assert seen_multi, "some strips should carry two defect families"


def test_every_family_appears_in_samples(gen):
    samples = gen.samples(n_good=3, n_defective=8)
    assert sum(s.is_good for s in samples) == 3
    found = {label for s in samples for label in s.labels}
    assert found == set(DEFECT_CLASSES)
    for s in samples:
        assert s.image.shape == (*SIZE, 3) and s.image.dtype == np.uint8
        assert set(s.masks_inline) == set(s.labels)
    assert len({s.group for s in samples}) == len(samples)


def test_explicit_labels_and_unknown_labels(gen):
    strip = gen.defective(0, labels=["scratches", "patches"])
    assert strip.labels == ("scratches", "patches")
    with pytest.raises(ValueError):
        gen.defective(0, labels=("rust",))


@pytest.mark.parametrize("size", [(128, 128), (64, 200), (256, 1600)])
def test_size_argument_is_honoured(size):
    gen = SteelStripGenerator(size=size, seed=0)
    for label in DEFECT_CLASSES:
        strip = gen.defective(1, labels=(label,))
        assert strip.image.shape == (*size, 3)
        assert strip.masks[label].shape == size and strip.masks[label].any()
    assert gen.good(0).image.shape == (*size, 3)


def test_write_dataset_files(tmp_path):
    root = write_dataset(tmp_path / "synth", n_good=2, n_defective=4, size=(64, 160), seed=1)
    classes = (root / "classes.txt").read_text().split()
    assert classes == ["background", *DEFECT_CLASSES]
    images = sorted(p.name for p in (root / "images").glob("*.png"))
    masks = sorted(p.name for p in (root / "masks").glob("*.png"))
    assert images == masks and len(images) == 6
    gen = SteelStripGenerator(size=(64, 160), seed=1)
    strip = gen.defective(2)
    image = np.asarray(Image.open(root / "images" / f"{strip.name}.png"))
    index_mask = np.asarray(Image.open(root / "masks" / f"{strip.name}.png"))
    assert np.array_equal(image, strip.image[..., 0])
    for label in strip.labels:
        assert np.array_equal(index_mask == classes.index(label), strip.masks[label])
    assert not np.asarray(Image.open(root / "masks" / "good_00000.png")).any()
