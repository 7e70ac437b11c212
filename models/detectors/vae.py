"""Convolutional VAE whose input-output difference is the anomaly map (seed 002).

Seed 002 trains the VAE with three independent gradients instead of one summed loss: the
encoder from the KL loss alone (E1), the encoder from the reconstruction (MSE) loss alone (E2)
and the decoder from the MSE loss alone (D). Here each gradient is computed on its own with
``torch.autograd.grad`` and applied by its own Adam optimiser, so each stream is normalised
independently and neither loss can drown the other (``gradient_mode="split"``);
``gradient_mode="summed"`` is the usual ELBO ``MSE + beta * KL`` with one optimiser.
The fit report carries the KL and MSE curves (``curves``); the training CLI plots each one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from kensa.models.backbones import WeightsOrigin
from kensa.models.detectors.anomaly import AnomalyConfig, AnomalyDetector
from kensa.models.imaging import to_tensor
from kensa.models.registry import register_detector

log = logging.getLogger(__name__)


class VaeConfig(AnomalyConfig):
    backbone: str = "none"  # trained from scratch: no pretrained weights involved
    width: int = Field(16, description="channels of the first encoder level (doubles per level)")
    levels: int = Field(4, ge=2, description="stride-2 levels: latent stride = 2**levels")
    latent_channels: int = Field(16, description="channels of the spatial latent")
    gradient_mode: Literal["split", "summed"] = "split"
    beta: float = Field(1.0, description="KL weight in summed mode")
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    crop: int = Field(64, description="train on random crops of this side (0 = whole images): "
                                      "the model is fully convolutional, and crops make a CPU "
                                      "epoch ~10x cheaper")
    blur_sigma: float = 2.0
    compare_sigma: float = Field(0.0, description="optional Gaussian low-pass (input pixels) "
                                 "of input and reconstruction before differencing")


def _lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``B x C x H x W`` batch (identity for sigma <= 0)."""
    if sigma <= 0:
        return x
    radius = max(1, round(3 * sigma))
    g = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = (g / g.sum()).repeat(x.shape[1], 1)
    y = F.pad(x, (radius,) * 4, mode="reflect")
    y = F.conv2d(y, g.view(x.shape[1], 1, 1, -1), groups=x.shape[1])
    return F.conv2d(y, g.view(x.shape[1], 1, -1, 1), groups=x.shape[1])


def random_crops(x: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``crop x crop`` window per image (the whole image when ``crop`` is 0 or
    not smaller than it)."""
    h, w = x.shape[-2:]
    ch, cw = min(crop or h, h), min(crop or w, w)
    if (ch, cw) == (h, w):
        return x
    tops = torch.randint(h - ch + 1, (len(x),), generator=generator).tolist()
    lefts = torch.randint(w - cw + 1, (len(x),), generator=generator).tolist()
    return torch.stack([im[:, t:t + ch, s:s + cw] for im, t, s in zip(x, tops, lefts,
                                                                      strict=True)])


def _block(cin: int, cout: int, down: bool) -> nn.Sequential:
    """Stride-2 conv down, or nearest upsampling + conv up (no transposed-conv checkerboard);
    reflect padding so image borders do not light up."""
    if down:
        conv: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=2, padding=1,
                                           padding_mode="reflect")]
    else:
        conv = [nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")]
    return nn.Sequential(*conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class ConvVae(nn.Module):
    """Encoder to a spatial Gaussian latent, decoder back to the (normalised) image."""

    def __init__(self, width: int, levels: int, latent: int) -> None:
        super().__init__()
        widths = [min(width * 2**i, 256) for i in range(levels)]
        enc, cin = [], 3
        for w in widths:
            enc.append(_block(cin, w, down=True))
            cin = w
        self.encoder = nn.Sequential(*enc, nn.Conv2d(cin, 2 * latent, 1))
        dec: list[nn.Module] = [nn.Conv2d(latent, cin, 1)]
        for w in reversed([3, *widths[:-1]]):
            dec.append(_block(cin, max(w, widths[0]), down=False))
            cin = max(w, widths[0])
        dec.append(nn.Conv2d(cin, 3, 3, padding=1, padding_mode="reflect"))
        self.decoder = nn.Sequential(*dec)
        self.stride = 2**levels

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (the posterior mean) for scoring."""
        mu, _ = self.encode(self._pad(x))
        return self.decoder(mu)[..., :x.shape[-2], :x.shape[-1]]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MSE per image, KL per image) of one stochastic pass."""
        xp = self._pad(x)
        mu, logvar = self.encode(xp)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.decoder(z)
        mse = F.mse_loss(recon, xp, reduction="sum") / x.shape[0]
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / x.shape[0]
        return mse, kl


@register_detector(
    "vae",
    task="anomaly",
    learns_from="good-only",
    description="Convolutional VAE trained with seed 002's split gradients; score = |x - x'|",
    quick={"input_size": (64, 256), "epochs": 120, "levels": 3},
)
class Vae(AnomalyDetector):
    """Reconstruction-difference detector with independent encoder/decoder gradients."""

    Config = VaeConfig
    config: VaeConfig

    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        model = ConvVae(self.config.width, self.config.levels, self.config.latent_channels)
        torch.manual_seed(self.config.seed)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.2)
                nn.init.zeros_(m.bias)
        return model, WeightsOrigin("none", "trained from scratch (no pretrained backbone)")

    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        recon = self.model(x)
        return ((_lowpass(x, self.config.compare_sigma)
                 - _lowpass(recon, self.config.compare_sigma)) ** 2).mean(dim=1)

    def fit_good(self, images: Sequence[np.ndarray], epochs: int | None = None,
                 batch_size: int | None = None, **_: Any) -> dict[str, Any]:
        cfg = self.config
        epochs = epochs or cfg.epochs
        batch_size = batch_size or cfg.batch_size
        model: ConvVae = self.model  # type: ignore[assignment]
        data = to_tensor(list(images), tuple(cfg.input_size))
        enc = list(model.encoder.parameters())
        dec = list(model.decoder.parameters())
        if cfg.gradient_mode == "split":
            optimizers = {"E1": torch.optim.Adam(enc, lr=cfg.lr),
                          "E2": torch.optim.Adam(enc, lr=cfg.lr),
                          "D": torch.optim.Adam(dec, lr=cfg.lr)}
        else:
            optimizers = {"all": torch.optim.Adam(enc + dec, lr=cfg.lr)}
        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        pixels = math.prod(random_crops(data[:1], cfg.crop, generator).shape[1:])
        curves: dict[str, list[float]] = {"kl": [], "mse": []}
        model.train()
        for _epoch in tqdm(range(epochs), desc=f"vae epochs ({cfg.gradient_mode})",
                           unit="epoch"):
            order = torch.randperm(len(data), generator=generator)
            sums = {"kl": 0.0, "mse": 0.0}
            for start in range(0, len(data), batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2:
                    continue
                x = random_crops(data[idx], cfg.crop, generator).to(self.device)
                mse, kl = model.losses(x)
                if cfg.gradient_mode == "split":
                    self._split_step(optimizers, enc, dec, mse, kl)
                else:
                    optimizers["all"].zero_grad(set_to_none=True)
                    (mse + cfg.beta * kl).backward()
                    optimizers["all"].step()
                sums["kl"] += float(kl.detach()) * len(idx)
                sums["mse"] += float(mse.detach()) * len(idx)
            curves["kl"].append(sums["kl"] / len(data))
            curves["mse"].append(sums["mse"] / len(data) / pixels)  # per pixel, readable
        model.eval()
        return {"epochs": epochs, "gradient_mode": cfg.gradient_mode,
                "final_mse_per_pixel": round(curves["mse"][-1], 5),
                "final_kl": round(curves["kl"][-1], 3), "curves": curves}

    @staticmethod
    def _split_step(optimizers: dict[str, torch.optim.Optimizer], enc: list[nn.Parameter],
                    dec: list[nn.Parameter], mse: torch.Tensor, kl: torch.Tensor) -> None:
        """Seed 002: E1 = dKL/d(enc), E2 = dMSE/d(enc), D = dMSE/d(dec), each applied by its
        own optimiser (the KL does not depend on the decoder, so it gets no KL gradient)."""
        e1 = torch.autograd.grad(kl, enc, retain_graph=True, allow_unused=True)
        grads = torch.autograd.grad(mse, enc + dec, allow_unused=True)
        e2, d = grads[:len(enc)], grads[len(enc):]
        for name, params, stream in (("E1", enc, e1), ("E2", enc, e2), ("D", dec, d)):
            for p, g in zip(params, stream, strict=True):
                p.grad = None if g is None else g.detach()
            optimizers[name].step()
            for p in params:
                p.grad = None
