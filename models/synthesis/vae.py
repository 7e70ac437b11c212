"""Seed 002's VAE (three independent gradients, ``kensa.models.detectors.vae``) trained on
the rare label and sampled from its prior: ``z ~ N(0, I)`` through the decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from kensa.models.data.samples import Sample
from kensa.models.imaging import IMAGENET_MEAN, IMAGENET_STD
from kensa.models.synthesis.base import Generator, Synthesised, register_generator


@register_generator("vae", "seed 002's VAE with independent KL/MSE gradients, sampled "
                           "from its prior")
class VaeGenerator(Generator):
    def __init__(self, *, levels: int = 4, width: int = 16, latent_channels: int = 16,
                 batch_size: int = 8, **options: Any) -> None:
        super().__init__(**options)
        self.levels = levels
        self.width = width
        self.latent_channels = latent_channels
        self.batch_size = batch_size
        self.vae = None

    def fit(self, label: str, samples: Sequence[Sample], good: Sequence[Sample]
            ) -> dict[str, Any]:
        from kensa.models.registry import create_detector

        if len(samples) < 2:
            raise ValueError(f"the VAE needs at least 2 images of {label!r}")
        self.vae = create_detector(
            "vae", weights="none", device=self.device, input_size=(self.size, self.size),
            crop=0, levels=self.levels, width=self.width,
            latent_channels=self.latent_channels, epochs=self.epochs,
            batch_size=self.batch_size, seed=self.seed, gradient_mode="split")
        report = self.vae.fit_good([s.load_image() for s in samples])
        return {"method": "vae", "size": self.size, "n_images": len(samples),
                **{k: report[k] for k in ("gradient_mode", "final_mse_per_pixel", "final_kl")}}

    @torch.inference_mode()
    def generate(self, count: int) -> list[Synthesised]:
        if self.vae is None:
            raise RuntimeError("fit the VAE first")
        model = self.vae.model.eval()
        side = self.size // model.stride
        gen = torch.Generator().manual_seed(self.seed + 1)
        z = torch.randn(count, self.latent_channels, side, side, generator=gen)
        x = model.decoder(z.to(self.vae.device)).float().cpu()
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        arr = ((x * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        return [Synthesised(np.ascontiguousarray(a)) for a in arr]
