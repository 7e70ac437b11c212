"""Seed 002's Stable Diffusion inpainting: only a chosen target area is regenerated.

The target areas are the real masks of the rare label (from its samples), placed on good
images when there are any (else on the label's own images); the prompt names the label.
Needs local weights of an inpainting pipeline (``--weights PATH``, a ``diffusers``
``save_pretrained`` folder); nothing is downloaded. Sides are rounded to multiples of 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kensa.models.data.samples import Sample
from kensa.models.synthesis.base import Generator, Synthesised, register_generator

PROMPT = "a {label} defect on a gray steel surface, industrial photo"


class WeightsRequired(RuntimeError):
    """Inpainting was asked for without a local pipeline folder."""


def load_pipeline(weights: str | Path | None, device: str = "cpu"):
    """A ``StableDiffusionInpaintPipeline`` from a local folder, offline."""
    if not weights:
        raise WeightsRequired(
            "--method inpaint needs local Stable Diffusion inpainting weights: pass "
            "--weights PATH (a diffusers save_pretrained folder, e.g. a downloaded "
            "stable-diffusion-inpainting snapshot); kensa downloads nothing")
    path = Path(weights).expanduser()
    if not (path / "model_index.json").is_file():
        raise WeightsRequired(f"--weights {path} is not a diffusers pipeline folder "
                              f"(no model_index.json)")
    try:
        from diffusers import StableDiffusionInpaintPipeline
    except ImportError as exc:
        raise WeightsRequired("--method inpaint needs the 'diffusers' and 'transformers' "
                              "packages: pip install 'kensa[synthesis]'") from exc
    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        path, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@register_generator("inpaint", "seed 002's Stable Diffusion inpainting of real defect areas "
                               "(local weights, --weights PATH)")
class InpaintGenerator(Generator):
    def __init__(self, *, weights: str | Path | None = None, steps: int = 30,
                 guidance: float = 7.5, prompt: str = PROMPT, **options: Any) -> None:
        super().__init__(**options)
        self.pipe = load_pipeline(weights, self.device)
        self.weights = str(weights)
        self.steps = steps
        self.guidance = guidance
        self.prompt = prompt
        self.label = ""
        self.bases: list[Sample] = []
        self.areas: list[Sample] = []

    def fit(self, label: str, samples: Sequence[Sample], good: Sequence[Sample]
            ) -> dict[str, Any]:
        self.label = label
        self.areas = [s for s in samples if s.has_masks] or list(samples)
        self.bases = list(good) or list(samples)
        if not self.bases:
            raise ValueError(f"no images to inpaint {label!r} into")
        return {"method": "inpaint", "weights": self.weights, "size": self.size,
                "bases": len(self.bases), "areas": len(self.areas),
                "area_source": "masks" if self.areas and self.areas[0].has_masks else "boxes"}

    def _area(self, rng: np.random.Generator, side: int) -> np.ndarray:
        """A target area at ``side`` x ``side``: a real mask of the label, or a random box."""
        if self.areas and self.areas[0].has_masks:
            sample = self.areas[rng.integers(len(self.areas))]
            image = sample.load_image()
            mask = sample.load_masks(*image.shape[:2]).get(self.label)
            if mask is not None and mask.any():
                resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(
                    (side, side), Image.Resampling.NEAREST)
                return np.asarray(resized) > 127
        box = np.zeros((side, side), bool)
        h, w = rng.integers(side // 8, side // 2, size=2)
        top, left = rng.integers(0, side - h), rng.integers(0, side - w)
        box[top:top + h, left:left + w] = True
        return box

    def generate(self, count: int) -> list[Synthesised]:
        side = max(8, self.size // 8 * 8)
        rng = np.random.default_rng(self.seed)
        out = []
        for k in range(count):
            base = self.bases[rng.integers(len(self.bases))]
            image = Image.fromarray(base.load_image()).convert("RGB").resize(
                (side, side), Image.Resampling.BICUBIC)
            area = self._area(rng, side)
            generator = torch.Generator().manual_seed(self.seed + k)
            result = self.pipe(prompt=self.prompt.format(label=self.label), image=image,
                               mask_image=Image.fromarray(area.astype(np.uint8) * 255),
                               height=side, width=side, num_inference_steps=self.steps,
                               guidance_scale=self.guidance, generator=generator,
                               output_type="np").images[0]
            pixels = (np.clip(result, 0, 1) * 255).round().astype(np.uint8)
            if pixels.shape[:2] != (side, side):
                pixels = np.asarray(Image.fromarray(pixels).resize((side, side)))
            # outside the target area the photo is kept exactly (seed 002: only the area
            # is regenerated)
            merged = np.where(area[..., None], pixels, np.asarray(image))
            out.append(Synthesised(merged, area, {"base": base.name}))
        return out
