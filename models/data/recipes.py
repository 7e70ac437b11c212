"""Named augmentation recipes (one registry) and the seed transforms albumentations lacks.

A recipe turns a few run settings (seed, rotation, photometric jitter) into an albumentations
``Compose`` applied to images already at input size; masks (``H x W x C``) follow every
geometric step. ``kensa train --augment NAME`` picks one and the detector config records it.

- ``default``: flips + optional rotation + brightness/contrast (the previous behaviour).
- ``flips``: horizontal and vertical flips only, the steel default of seed 003.
- ``blackout``: flips + "defect blackout" (albumentations' ``MaskDropout`` over the union of the
  defect masks: the defect's pixels and mask go black; a classifier's label is dropped when
  none of its mask is left).
- ``paste`` / ``slide``: seed 000's background replacement: the part is cut out (from a
  ``part`` mask when the data carries one, else an Otsu segmentation) and pasted at the centre
  (``paste``) or at a random height (``slide``) of a random background.
- ``pose``: seed 001's rotation/shift/scale copies (``kensa.models.data.robust``), for
  good-only detectors and anything trained to be pose-robust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
from scipy import ndimage

from kensa.models.data.augment import train_transform
from kensa.models.data.robust import random_pose


@dataclass(frozen=True)
class RecipeSpec:
    name: str
    build: Callable[..., list[A.BasicTransform]]
    description: str
    needs_masks: bool = False  # the recipe reads defect masks (a classifier loads them too)


_RECIPES: dict[str, RecipeSpec] = {}


def register_augment(name: str, description: str, needs_masks: bool = False
                     ) -> Callable[[Callable[..., list[A.BasicTransform]]],
                                   Callable[..., list[A.BasicTransform]]]:
    """Register a recipe: a function ``(seed=, rotate=, photometric=) -> [transforms]``."""

    def wrap(fn: Callable[..., list[A.BasicTransform]]) -> Callable[..., list[A.BasicTransform]]:
        if name in _RECIPES:
            raise ValueError(f"augmentation recipe {name!r} is already registered")
        _RECIPES[name] = RecipeSpec(name, fn, description, needs_masks)
        return fn

    return wrap


def list_recipes() -> tuple[str, ...]:
    return tuple(_RECIPES)


def get_recipe(name: str) -> RecipeSpec:
    try:
        return _RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown augmentation recipe {name!r}; known: "
                         f"{', '.join(_RECIPES)}") from None


def build_recipe(name: str, *, seed: int | None = None, rotate: float = 0.0,
                 photometric: bool = True, hflip: bool = True, vflip: bool = True
                 ) -> A.Compose:
    """The seeded ``Compose`` of a registered recipe (an extra ``part`` mask target is
    declared so the cut-out recipes can use a part mask when one is passed)."""
    steps = get_recipe(name).build(seed=seed, rotate=rotate, photometric=photometric,
                                   hflip=hflip, vflip=vflip)
    return A.Compose(steps, seed=seed, additional_targets={"part": "mask"})


# -- transforms albumentations does not have ------------------------------------------------


class DefectBlackout(A.MaskDropout):
    """``MaskDropout`` over the union of a multi-channel (``H x W x C``) defect mask: one or
    more defect components are blacked out in the image and in every mask channel."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]
                                     ) -> dict[str, Any]:
        mask = data["mask"]
        if mask.ndim == 3:
            data = {**data, "mask": mask.any(axis=-1).astype(np.uint8)}
        return super().get_params_dependent_on_data(params, data)


def otsu_part_mask(image: np.ndarray) -> np.ndarray:
    """A simple cut-out: Otsu threshold of the gray image, the side touching the border
    less is the part; largest component, holes filled."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    _, fg = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = fg.astype(bool)
    border = np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]])
    if border.mean() > 0.5:
        fg = ~fg
    regions, count = ndimage.label(fg)
    if count == 0:
        return np.ones(gray.shape, bool)
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(regions == sizes.argmax())


def random_background(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random smooth colour field with some texture (seed 000 used random photos; a
    folder of backgrounds can be passed to ``BackgroundPaste`` instead)."""
    height, width = shape
    coarse = rng.uniform(0, 255, (rng.integers(2, 9), rng.integers(2, 9), 3)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field += rng.normal(0, rng.uniform(2, 20), field.shape).astype(np.float32)
    return np.clip(field, 0, 255).astype(np.uint8)


class BackgroundPaste(A.DualTransform):
    """Seed 000: cut the part out and paste it on a random background, at the centre
    (``mode="paste"``) or at a random height (``mode="slide"``, the seed slid the part
    from top to bottom). Defect masks move with the part; outside it they are empty.

    The cut-out comes from the ``part`` mask target when given, else ``otsu_part_mask``.
    """

    def __init__(self, mode: str = "paste", backgrounds: list[np.ndarray] | None = None,
                 p: float = 0.5) -> None:
        super().__init__(p=p)
        if mode not in {"paste", "slide"}:
            raise ValueError(f"mode must be 'paste' or 'slide', not {mode!r}")
        self.mode = mode
        self.backgrounds = backgrounds or []

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]
                                     ) -> dict[str, Any]:
        image = data["image"]
        height, width = image.shape[:2]
        part = data.get("part")
        part = otsu_part_mask(image) if part is None else np.asarray(part).astype(bool)
        if part.ndim == 3:
            part = part.any(axis=-1)
        ys, xs = np.nonzero(part)
        if len(ys) == 0:
            return {"part": None, "dy": 0, "dx": 0, "background": image}
        top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        dx = (width - (right - left)) // 2 - left
        if self.mode == "paste":
            dy = (height - (bottom - top)) // 2 - top
        else:
            dy = self.py_random.randint(0, height - (bottom - top)) - top
        rng = np.random.default_rng(self.py_random.randint(0, 2**31 - 1))
        if self.backgrounds:
            source = self.backgrounds[self.py_random.randrange(len(self.backgrounds))]
            background = cv2.resize(source, (width, height), interpolation=cv2.INTER_AREA)
        else:
            background = random_background((height, width), rng)
        if image.ndim == 2 or image.shape[-1] != background.shape[-1]:
            background = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY)
            if image.ndim == 3:
                background = np.repeat(background[..., None], image.shape[-1], axis=-1)
        return {"part": part, "dy": int(dy), "dx": int(dx), "background": background}

    @staticmethod
    def _move(values: np.ndarray, part: np.ndarray, dy: int, dx: int,
              canvas: np.ndarray) -> np.ndarray:
        out = canvas.copy()
        ys, xs = np.nonzero(part)
        out[ys + dy, xs + dx] = values[ys, xs]
        return out

    def apply(self, img: np.ndarray, part: np.ndarray | None = None, dy: int = 0, dx: int = 0,
              background: np.ndarray | None = None, **params: Any) -> np.ndarray:
        if part is None:
            return img
        return self._move(img, part, dy, dx, background.astype(img.dtype))

    def apply_to_mask(self, mask: np.ndarray, part: np.ndarray | None = None, dy: int = 0,
                      dx: int = 0, **params: Any) -> np.ndarray:
        if part is None:
            return mask
        return self._move(mask, part, dy, dx, np.zeros_like(mask))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("mode",)


# -- the recipes ----------------------------------------------------------------------------


def _flips(hflip: bool, vflip: bool) -> list[A.BasicTransform]:
    return [*([A.HorizontalFlip(p=0.5)] if hflip else []),
            *([A.VerticalFlip(p=0.5)] if vflip else [])]


@register_augment("default", "flips + optional rotation + brightness/contrast jitter")
def _default(seed=None, rotate=0.0, photometric=True, hflip=True, vflip=True, **_):
    return list(train_transform(hflip=hflip, vflip=vflip, rotate=rotate,
                                photometric=photometric, seed=seed).transforms)


@register_augment("none", "no augmentation")
def _none(**_):
    return []


@register_augment("flips", "horizontal + vertical flips only (seed 003's steel default)")
def _flips_only(hflip=True, vflip=True, **_):
    return _flips(hflip, vflip)


@register_augment("blackout", "flips + defect blackout (MaskDropout)", needs_masks=True)
def _blackout(hflip=True, vflip=True, **_):
    return [*_flips(hflip, vflip), DefectBlackout(max_objects=(1, 3), fill=0, p=0.5)]


@register_augment("paste", "seed 000: part cut out, pasted at the centre of a random "
                           "background; flips", needs_masks=True)
def _paste(hflip=True, vflip=True, **_):
    return [BackgroundPaste("paste", p=0.5), *_flips(hflip, vflip)]


@register_augment("slide", "seed 000: part cut out, slid to a random height on a random "
                           "background; flips", needs_masks=True)
def _slide(hflip=True, vflip=True, **_):
    return [BackgroundPaste("slide", p=0.5), *_flips(hflip, vflip)]


@register_augment("pose", "seed 001: rotation/shift/scale copies (+ flips)")
def _pose(seed=None, hflip=True, vflip=True, **_):
    return [*random_pose(seed).transforms, *_flips(hflip, vflip)]
