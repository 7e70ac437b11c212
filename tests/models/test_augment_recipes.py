"""Every augmentation recipe keeps masks on the pixels they label (pixel-exact), the cut-out
paste moves part and masks together, blackout drops a classifier label with its mask, and a
recipe picked for training is recorded in the detector config."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kensa.models.data.recipes import (
    BackgroundPaste,
    DefectBlackout,
    build_recipe,
    get_recipe,
    list_recipes,
    otsu_part_mask,
)
from kensa.models.data.samples import Sample
from kensa.models.data.synthetic import SteelStripGenerator
from kensa.models.detectors.fitting import SampleDataset


def coded(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image whose red value says which mask channel a pixel belongs to (value % 4)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return image, decode(image)


def decode(image: np.ndarray) -> np.ndarray:
    return np.stack([image[..., 0] % 4 == c + 1 for c in range(3)], axis=-1)


@pytest.mark.parametrize("name", ["default", "none", "flips", "blackout", "pose"])
def test_recipe_keeps_masks_pixel_exact(name):
    image, mask = coded()
    recipe = build_recipe(name, seed=3, photometric=False, rotate=10.0)
    for step in recipe.transforms:  # nearest sampling: values are moved, never blended
        if hasattr(step, "interpolation"):
            step.interpolation = cv2.INTER_NEAREST
    changed = 0
    for _ in range(12):
        out = recipe(image=image, mask=mask.astype(np.uint8))
        assert out["mask"].shape == mask.shape
        np.testing.assert_array_equal(out["mask"].astype(bool), decode(out["image"]))
        changed += not np.array_equal(out["image"], image)
    assert changed or name == "none"


def test_flips_only_is_the_steel_default_and_registry_is_one():
    assert [type(t).__name__ for t in build_recipe("flips", seed=0).transforms] == \
        ["HorizontalFlip", "VerticalFlip"]
    assert {"default", "flips", "blackout", "paste", "slide", "pose"} <= set(list_recipes())
    assert get_recipe("blackout").needs_masks
    with pytest.raises(ValueError, match="unknown augmentation recipe"):
        get_recipe("rotate-everything")


def test_blackout_removes_defect_pixels_and_masks_together():
    image, mask = coded(1)
    step = DefectBlackout(max_objects=(1, 1), p=1.0)
    step.set_random_seed(0)
    out = step(image=image, mask=mask.astype(np.uint8))
    gone = mask.any(-1) & ~out["mask"].astype(bool).any(-1)
    assert gone.any()
    assert (out["image"][gone] == 0).all()
    np.testing.assert_array_equal(out["image"][~gone], image[~gone])


def part_on_tarp() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bright part (rows 20-43, cols 10-49) with a defect on a blue tarp."""
    image = np.zeros((80, 120, 3), np.uint8)
    image[...] = (30, 60, 160)
    part = np.zeros((80, 120), bool)
    part[20:44, 10:50] = True
    image[part] = (200, 190, 180)
    defect = np.zeros((80, 120, 1), np.uint8)
    defect[30:34, 20:40] = 1
    image[defect[..., 0] == 1] = (60, 40, 40)
    return image, part, defect


@pytest.mark.parametrize("mode", ["paste", "slide"])
@pytest.mark.parametrize("from_mask", [True, False])
def test_background_paste_moves_part_and_masks_exactly(mode, from_mask):
    image, part, defect = part_on_tarp()
    if not from_mask:
        np.testing.assert_array_equal(otsu_part_mask(image), part)
    step = BackgroundPaste(mode, p=1.0)
    step.set_random_seed(5)
    data = {"image": image, "mask": defect, **({"part": part.astype(np.uint8)}
                                                if from_mask else {})}
    params = step.get_params_dependent_on_data({}, data)
    dy, dx = params["dy"], params["dx"]
    out_image = step.apply(image, **params)
    out_mask = step.apply_to_mask(defect, **params)
    ys, xs = np.nonzero(part)
    np.testing.assert_array_equal(out_image[ys + dy, xs + dx], image[ys, xs])
    np.testing.assert_array_equal(out_mask[ys + dy, xs + dx], defect[ys, xs])
    assert out_mask.sum() == defect.sum()
    assert not np.array_equal(out_image, image)
    if mode == "paste":  # centred
        assert (ys.min() + dy, ys.max() + dy) == (28, 51)
        assert (xs.min() + dx, xs.max() + dx) == (40, 79)


def test_cutout_recipes_run_in_a_compose_with_masks():
    image, part, defect = part_on_tarp()
    for name in ("paste", "slide"):
        recipe = build_recipe(name, seed=2)
        for _ in range(6):
            out = recipe(image=image, mask=defect, part=part.astype(np.uint8))
            assert out["mask"].sum() == defect.sum()
            moved = out["mask"][..., 0].astype(bool)
            assert (out["image"][moved] == (60, 40, 40)).all()


def test_classifier_label_dropped_when_blackout_removes_its_mask():
    strip = SteelStripGenerator((64, 256), seed=4).defective(0, ["scratches"])
    sample = Sample(labels=strip.labels, image=strip.image, masks_inline=strip.masks)
    recipe = build_recipe("blackout", seed=0, hflip=False, vflip=False)
    recipe.transforms[0].p = 1.0
    recipe.transforms[0].max_objects = (99, 99)  # every component: the label must go
    ds = SampleDataset([sample], ["scratches"], (64, 256), "labels", recipe,
                       masks_for_transform=True)
    _, y = ds[0]
    assert y.tolist() == [0.0]
    plain = SampleDataset([sample], ["scratches"], (64, 256), "labels", None)
    assert plain[0][1].tolist() == [1.0]
