"""Reconstruction by inpainting with fuzzy grid masks and dynamic inference (seed 004).

Training: the image is cut into ``cell x cell`` grid cells; the cells are dealt at random into
``mask_sets`` complementary sets, and one set per image is covered by a fuzzy mask (blurred
edges, keeping ``centre_keep`` of the original at a cell's centre and none at its rim, as the
seed describes). A small U-Net (skips only at strides 4 and 8, as the seed's ResNet34
autoencoder keeps only its deeper skip paths, so it cannot copy pixels straight through) learns
``[MSE + (1 - SSIM)](x, f(x)) + inpaint_weight * [MSE + (1 - SSIM)](x, f(masked x))``.

Inference ("the model" of the seed's algorithm 1 is the inpainting composite: every set masked
in turn, each cell taken from the pass in which it was hidden): reconstruct repeatedly,
``R_{n+1} = composite(R_n)``, until two successive reconstructions agree (mean squared change
<= ``converge_tol``, at most ``max_rounds`` = 10). If they agree, the settled reconstruction is
the answer; if not, the cells whose first-round error exceeds the good-image cell quantile
learned at fit are masked and inpainted once. The map is the input's per-pixel
``MSE + (1 - SSIM)`` distance to that answer. (The seed also subtracts a "background" error
term; subtracting it only in one branch put the two branches' maps on different scales and
lit up good images, so it is left out: calibration on good images sets the zero instead.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from kensa.models.backbones import WeightsOrigin
from kensa.models.detectors.anomaly import AnomalyConfig, AnomalyDetector
from kensa.models.detectors.vae import random_crops
from kensa.models.imaging import IMAGENET_MEAN, IMAGENET_STD, to_tensor
from kensa.models.registry import register_detector

log = logging.getLogger(__name__)


class InpaintConfig(AnomalyConfig):
    backbone: str = "none"  # trained from scratch
    width: int = Field(8, description="channels at full resolution (doubles per level)")
    cell: int = Field(16, description="grid cell side k in input pixels (seed: 16)")
    mask_sets: int = Field(2, ge=2, description="complementary cell sets")
    centre_keep: float = Field(0.3, ge=0, lt=1, description="original kept at a cell centre")
    inpaint_weight: float = Field(1.0, description="lambda of the inpainting term")
    ssim_weight: float = Field(1.0, description="weight of 1 - SSIM in loss and score")
    max_rounds: int = Field(10, ge=2)
    converge_tol: float = Field(2e-3, description="mean squared change at which rounds agree")
    cell_quantile: float = Field(0.99, description="good cell error quantile = suspicious")
    epochs: int = 40
    batch_size: int = 8
    lr: float = 2e-3
    crop: int = Field(64, description="train on random crops of this side (0 = whole images)")
    blur_sigma: float = 2.0


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class InpaintNet(nn.Module):
    """U-Net with 4 down levels (stride 16 bottleneck) and skips only at strides 4 and 8."""

    def __init__(self, width: int) -> None:
        super().__init__()
        w = [width * 2**i for i in range(5)]
        self.down = nn.ModuleList([_conv(3, w[0])] + [_conv(w[i], w[i + 1]) for i in range(4)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2)
                                 for i in reversed(range(4))])
        # decoder input widths: skip concatenated at strides 8 (i=3) and 4 (i=2) only
        self.fuse = nn.ModuleList([_conv(w[i] * (2 if i in (2, 3) else 1), w[i])
                                   for i in reversed(range(4))])
        self.head = nn.Conv2d(w[0], 3, 1)
        self.register_buffer("cell_threshold", torch.tensor(float("inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        y = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
        skips = []
        for i, block in enumerate(self.down):
            y = block(y if i == 0 else F.max_pool2d(y, 2))
            skips.append(y)
        for j, (up, fuse) in enumerate(zip(self.up, self.fuse, strict=True)):
            level = 3 - j
            y = up(y)
            if level in (2, 3):
                y = torch.cat([y, skips[level]], dim=1)
            y = fuse(y)
        return self.head(y)[..., :h, :w]


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    g = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = 11, sigma: float = 1.5
             ) -> torch.Tensor:
    """Per-pixel SSIM (averaged over channels) of two ``B x C x H x W`` images in [0, 1]."""
    c = a.shape[1]
    g = _gaussian_window(size, sigma, a.device)
    kx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.pad(t, (size // 2,) * 4, mode="reflect")
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=1)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def distance_map(a: torch.Tensor, b: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """Per-pixel ``MSE + w (1 - SSIM)`` between two normalised images, ``B x H x W``."""
    ua, ub = _unit(a), _unit(b)
    return ((ua - ub) ** 2).mean(dim=1) + ssim_weight * (1 - ssim_map(ua, ub)).clamp_min(0)


def cell_assignment(height: int, width: int, cell: int, sets: int,
                    generator: torch.Generator) -> torch.Tensor:
    """A random set index per grid cell, balanced, as a ``rows x cols`` long tensor."""
    rows, cols = -(-height // cell), -(-width // cell)
    labels = torch.arange(rows * cols) % sets
    return labels[torch.randperm(rows * cols, generator=generator)].view(rows, cols)


def fuzzy_alpha(assignment: torch.Tensor, chosen: torch.Tensor, height: int, width: int,
                cell: int, centre_keep: float) -> torch.Tensor:
    """Masking strength ``B x 1 x H x W`` in [0, 1] for the cells of set ``chosen[b]``:
    1 at a cell's rim, ``1 - centre_keep`` at its centre, edges blurred."""
    hard = (assignment[None] == chosen.view(-1, 1, 1)).float()  # B x rows x cols
    hard = hard.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :height, :width]
    coords = (torch.arange(cell, dtype=torch.float32) + 0.5) / cell * 2 - 1  # -1..1
    rim = torch.maximum(coords.abs()[:, None], coords.abs()[None, :])  # 0 centre, 1 rim
    profile = 1 - centre_keep * (1 - rim) ** 2
    tiled = profile.repeat(-(-height // cell), -(-width // cell))[:height, :width]
    alpha = (hard * tiled)[:, None]
    sigma = max(0.5, cell / 8)
    radius = max(1, round(2 * sigma))
    g = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    g = g / g.sum()
    alpha = F.pad(alpha, (radius,) * 4, mode="replicate")
    alpha = F.conv2d(F.conv2d(alpha, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return alpha.clamp(0, 1)


@register_detector(
    "inpaint",
    task="anomaly",
    learns_from="good-only",
    description="Inpainting U-Net with fuzzy grid masks and dynamic inference (seed 004)",
    quick={"input_size": (64, 256), "epochs": 30},
)
class Inpaint(AnomalyDetector):
    """Seed 004's generative localisation: fuzzy-masked inpainting, iterative inference."""

    Config = InpaintConfig
    config: InpaintConfig

    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        torch.manual_seed(self.config.seed)
        return (InpaintNet(self.config.width),
                WeightsOrigin("none", "trained from scratch (no pretrained backbone)"))

    # -- reconstruction --------------------------------------------------------------------
    def _alpha_sets(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The complementary fuzzy masks used at inference (fixed by the seed)."""
        h, w = x.shape[-2:]
        assignment = cell_assignment(h, w, self.config.cell, self.config.mask_sets,
                                     torch.Generator().manual_seed(self.config.seed))
        return [fuzzy_alpha(assignment, torch.tensor([s]), h, w, self.config.cell,
                            self.config.centre_keep).to(x.device)
                for s in range(self.config.mask_sets)]

    def composite(self, x: torch.Tensor, alphas: list[torch.Tensor]) -> torch.Tensor:
        """Each cell taken from the pass in which it was masked (weights = mask strength)."""
        total = torch.zeros_like(x)
        weight = torch.zeros_like(x[:, :1])
        for alpha in alphas:
            total += alpha * self.model(x * (1 - alpha))
            weight += alpha
        return total / weight.clamp_min(1e-6)

    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        alphas = self._alpha_sets(x)
        b = x.shape[0]
        prev = x
        first = None
        converged = torch.zeros(b, dtype=torch.bool, device=x.device)
        settled = torch.zeros_like(x)
        for _ in range(cfg.max_rounds):
            cur = self.composite(prev, alphas)
            if first is None:
                first = cur
            else:  # two successive reconstructions: do they agree?
                change = ((cur - prev) ** 2).mean(dim=(1, 2, 3))
                newly = ~converged & (change <= cfg.converge_tol)
                if newly.any():
                    settled[newly] = cur[newly]
                    converged |= newly
                if bool(converged.all()):
                    break
            prev = cur
        assert first is not None
        final = settled
        if (~converged).any():
            nc = ~converged
            final[nc] = self._repair(x[nc], first[nc])
        # one distance for both branches, so every map is on the same calibrated scale
        return distance_map(x, final, cfg.ssim_weight)

    def _repair(self, x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Mask the cells whose first-round error is suspicious and inpaint them once."""
        cfg = self.config
        err = distance_map(x, first, cfg.ssim_weight)
        cells = F.avg_pool2d(err[:, None], cfg.cell, ceil_mode=True)[:, 0]
        suspicious = cells > self.model.cell_threshold
        h, w = x.shape[-2:]
        alpha = torch.cat([
            fuzzy_alpha(s.long().cpu(), torch.tensor([1]), h, w, cfg.cell, 0.0)
            for s in suspicious
        ]).to(x.device)
        return self.model(x * (1 - alpha))

    # -- training --------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ux, uy = _unit(x), _unit(y)
        mse = F.mse_loss(y, x)
        return mse + self.config.ssim_weight * (1 - ssim_map(ux, uy).mean())

    def fit_good(self, images: Sequence[np.ndarray], epochs: int | None = None,
                 batch_size: int | None = None, **_: Any) -> dict[str, Any]:
        cfg = self.config
        epochs = epochs or cfg.epochs
        batch_size = batch_size or cfg.batch_size
        model: InpaintNet = self.model  # type: ignore[assignment]
        data = to_tensor(list(images), tuple(cfg.input_size))
        generator = torch.Generator().manual_seed(cfg.seed)
        h, w = random_crops(data[:1], cfg.crop, generator).shape[-2:]
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        steps = epochs * -(-len(data) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                       total_steps=max(1, steps))
        curve: list[float] = []
        model.train()
        done = 0
        for _epoch in tqdm(range(epochs), desc="inpaint epochs", unit="epoch"):
            order = torch.randperm(len(data), generator=generator)
            running = 0.0
            for start in range(0, len(data), batch_size):
                idx = order[start:start + batch_size]
                x = random_crops(data[idx], cfg.crop, generator).to(self.device)
                assignment = cell_assignment(h, w, cfg.cell, cfg.mask_sets, generator)
                chosen = torch.randint(cfg.mask_sets, (len(idx),), generator=generator)
                alpha = fuzzy_alpha(assignment, chosen, h, w, cfg.cell,
                                    cfg.centre_keep).to(self.device)
                if len(idx) < 2:
                    continue
                loss = self._loss(x, model(x)) + cfg.inpaint_weight * self._loss(
                    x, model(x * (1 - alpha)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if done < steps - 1:
                    schedule.step()
                done += 1
                running += float(loss.detach()) * len(idx)
            curve.append(running / len(data))
        model.eval()
        threshold = self._cell_threshold(images)
        model.cell_threshold = torch.tensor(threshold, device=self.device)
        return {"epochs": epochs, "final_loss": round(curve[-1], 5),
                "cell_threshold": round(threshold, 6), "curves": {"loss": curve}}

    @torch.inference_mode()
    def _cell_threshold(self, images: Sequence[np.ndarray]) -> float:
        """Quantile of good cells' first-round error: above it a cell is suspicious."""
        cells = []
        for start in range(0, len(images), 8):
            x = to_tensor(list(images[start:start + 8]), tuple(self.config.input_size))
            x = x.to(self.device)
            first = self.composite(x, self._alpha_sets(x))
            err = distance_map(x, first, self.config.ssim_weight)
            cells.append(F.avg_pool2d(err[:, None], self.config.cell, ceil_mode=True).flatten())
        return float(torch.quantile(torch.cat(cells).float(), self.config.cell_quantile))
