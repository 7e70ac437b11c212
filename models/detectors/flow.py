"""Normalizing-flow anomaly detection on a pretrained feature map (seed 001).

Seed 001 takes EfficientNet-B5's 7th block (counting the stem: the second-to-last stage,
304 channels at stride 32) and maps its features through 4 affine-coupling steps (subnet
conv-BN-Swish-conv whose output is split into scale and shift; channel permutation between
steps), trained by the negative log-likelihood ``0.5 ||z||^2 - log|det J|`` on good images only
(Adam, weight decay 1e-5, batch 8, warm-up + cosine learning rate in [1e-5, 1e-3]). Offline we
have EfficientNet-Lite0-2; the literal match is ``blocks.5`` (Lite0: 192 channels, stride 32,
``stage=5``). On KolektorSDD at 320x128 that map is 10x4 and its likelihoods degenerate (good
val images reach NLL ~1e4, image AUROC 0.826 / pixel 0.854 at 20 epochs), so the default is
``blocks.4`` (112 channels, stride 16: 20x8; 0.842 / 0.899 in the same run). The anomaly map is
the per-position negative log-likelihood (per channel), upsampled to the input.
``augment`` adds seed 001's rotation/shift/scale augmentation (NF+DA).

With ``native_resolution`` the stage's features of overlapping tiles at the photo's own size are
stitched into one map (``kensa.models.tiling``); the couplings are convolutional, so they run on
the whole stitched map, and they are trained on ``native_crops`` random square crops of each
good map per epoch (one tile's worth of positions each), which keeps a batch's size fixed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from kensa.models.backbones import WeightsOrigin, create_backbone
from kensa.models.data.robust import random_pose
from kensa.models.detectors.anomaly import AnomalyConfig, AnomalyDetector
from kensa.models.imaging import to_tensor
from kensa.models.registry import register_detector
from kensa.models.tiling import tiled

log = logging.getLogger(__name__)


class FlowConfig(AnomalyConfig):
    native_capable: ClassVar[bool] = True
    stage: int = Field(4, ge=1, le=6, description="EfficientNet stage (blocks.N) whose output "
                                                  "is modelled; 5 is the literal match of B5's "
                                                  "7th block, 4 (stride 16) works better here")
    steps: int = Field(4, ge=1, description="affine-coupling steps")
    hidden_ratio: float = Field(1.0, description="subnet width / input channels")
    kernel_size: int = Field(3, description="subnet convolution kernel")
    clamp: float = Field(2.0, description="soft clamp of the log-scale")
    epochs: int = Field(20, description="seed 001 used 100; on KolektorSDD 20 scored the same "
                                       "(0.842/0.899 vs 0.838/0.894) in a fifth of the time")
    batch_size: int = 8
    lr_min: float = 1e-5
    lr_max: float = 1e-3
    warmup_fraction: float = Field(0.1, description="share of steps with linear warm-up")
    weight_decay: float = 1e-5
    augment: bool = Field(False, description="rotation/shift/scale augmentation (NF+DA)")
    native_crops: int = Field(4, ge=1, description="native mode: random tile-sized crops of "
                                                   "each good feature map per epoch")


class StageFeatures(nn.Module):
    """A timm EfficientNet cut after ``blocks[stage]``: one feature map."""

    def __init__(self, net: nn.Module, stage: int) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1
        self.blocks = nn.Sequential(*list(net.blocks.children())[:stage + 1])
        self.channels = _last_channels(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(x)))


def _last_channels(blocks: nn.Module) -> int:
    convs = [m for m in blocks.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


class AffineCoupling(nn.Module):
    """``z2 = exp(s(y1)) * y2 + t(y1)`` with one subnet whose output splits into s and t."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, clamp: float) -> None:
        super().__init__()
        self.split = channels // 2
        out = channels - self.split
        pad = kernel_size // 2
        self.subnet = nn.Sequential(
            nn.Conv2d(self.split, hidden, kernel_size, padding=pad),
            nn.BatchNorm2d(hidden),
            nn.SiLU(),  # Swish
            nn.Conv2d(hidden, 2 * out, kernel_size, padding=pad),
        )
        nn.init.zeros_(self.subnet[-1].weight)  # start as the identity
        nn.init.zeros_(self.subnet[-1].bias)
        self.clamp = clamp

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y1, y2 = y[:, :self.split], y[:, self.split:]
        s, t = self.subnet(y1).chunk(2, dim=1)
        s = self.clamp * torch.tanh(s / self.clamp)  # soft clamp keeps exp(s) finite
        return torch.cat([y1, torch.exp(s) * y2 + t], dim=1), s.sum(dim=1)


class FlowModel(nn.Module):
    """Frozen feature stage -> standardisation -> coupling steps with fixed permutations."""

    def __init__(self, features: StageFeatures, steps: int, hidden_ratio: float,
                 kernel_size: int, clamp: float, seed: int) -> None:
        super().__init__()
        self.features = features.requires_grad_(False)
        c = features.channels
        self.register_buffer("feature_mean", torch.zeros(c))
        self.register_buffer("feature_std", torch.ones(c))
        generator = torch.Generator().manual_seed(seed)
        for i in range(steps):
            self.register_buffer(f"permutation_{i}", torch.randperm(c, generator=generator))
        hidden = max(8, round(c * hidden_ratio))
        self.couplings = nn.ModuleList(
            AffineCoupling(c, hidden, kernel_size, clamp) for _ in range(steps)
        )

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return (f - self.feature_mean[:, None, None]) / self.feature_std[:, None, None]

    def flow(self, f: torch.Tensor) -> torch.Tensor:
        """Per-position negative log-likelihood ``B x h x w`` (nats per channel)."""
        z, log_det = f, torch.zeros_like(f[:, 0])
        for i, coupling in enumerate(self.couplings):
            z = z[:, getattr(self, f"permutation_{i}")]
            z, ld = coupling(z)
            log_det = log_det + ld
        nll = 0.5 * (z**2).sum(dim=1) - log_det
        return nll / f.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow(self.extract(x))


def warmup_cosine(step: int, total: int, warmup: int, lr_min: float, lr_max: float) -> float:
    """Linear warm-up from ``lr_min`` to ``lr_max``, then cosine decay back to ``lr_min``."""
    if step < warmup:
        return lr_min + (lr_max - lr_min) * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * min(1.0, progress)))


@register_detector(
    "flow",
    task="anomaly",
    learns_from="good-only",
    description="Normalizing flow (4 affine couplings) on pretrained features (seed 001)",
    quick={"input_size": (64, 256), "stage": 3, "epochs": 8},
)
class Flow(AnomalyDetector):
    """Seed 001's normalizing-flow detector on EfficientNet-Lite features."""

    Config = FlowConfig
    config: FlowConfig

    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        net, origin = create_backbone(self.config.backbone, weights)
        features = StageFeatures(net, self.config.stage)
        model = FlowModel(features, self.config.steps, self.config.hidden_ratio,
                          self.config.kernel_size, self.config.clamp, self.config.seed)
        return model, origin

    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.native_resolution:
            model: FlowModel = self.model  # type: ignore[assignment]
            return model.flow(self._standardise(self._native_features(x)))
        return self.model(x)

    def _native_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stage's stitched features of one photo at its own size (padded to the grid)."""
        return tiled(self.model.features, x, self.config.tile)[0]

    def _standardise(self, f: torch.Tensor) -> torch.Tensor:
        model: FlowModel = self.model  # type: ignore[assignment]
        return (f - model.feature_mean[:, None, None]) / model.feature_std[:, None, None]

    def _crops(self, maps: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """``native_crops`` random tile-sized crops of every (standardised) feature map."""
        side = self._tile_side()
        out = []
        for f in maps:
            h, w = f.shape[-2:]
            for _ in range(self.config.native_crops):
                y = int(torch.randint(h - side + 1, (1,), generator=generator))
                x = int(torch.randint(w - side + 1, (1,), generator=generator))
                out.append(f[:, :, y:y + side, x:x + side])
        return torch.cat(out)

    def _tile_side(self) -> int:
        """Side of one tile's feature map (the tile size over the stage's stride)."""
        probe = torch.zeros(1, 3, self.config.tile.size, self.config.tile.size,
                            device=self.device)
        with torch.inference_mode():
            return int(self.model.features(probe).shape[-1])

    def _fit_native(self, images: Sequence[np.ndarray], epochs: int, batch_size: int
                    ) -> dict[str, Any]:
        cfg = self.config
        model: FlowModel = self.model  # type: ignore[assignment]
        model.eval()
        with torch.inference_mode():
            maps = [self._native_features(self.native_tensor(im)).clone() for im in images]
        flat = torch.cat([f.flatten(2) for f in maps], dim=2)[0]  # C x positions
        model.feature_mean = flat.mean(dim=1).contiguous()
        std = flat.std(dim=1)
        model.feature_std = std.clamp_min(float(0.1 * std.median()) + 1e-6).contiguous()
        maps = [self._standardise(f) for f in maps]
        del flat
        generator = torch.Generator().manual_seed(cfg.seed)
        history = self._train(lambda: self._crops(maps, generator), epochs, batch_size,
                              generator)
        h, w = maps[0].shape[-2:]
        return {"epochs": epochs, "feature_map": [int(maps[0].shape[1]), int(h), int(w)],
                "stage": f"blocks.{cfg.stage}", "native_resolution": True,
                "crops_per_image": cfg.native_crops,
                "final_nll": round(history[-1], 5), "curves": {"nll": history}}

    def _train(self, epoch_features, epochs: int, batch_size: int,
               generator: torch.Generator) -> list[float]:
        """Train the couplings by NLL; ``epoch_features()`` gives each epoch's standardised
        feature maps (``N x C x h x w``)."""
        cfg = self.config
        model: FlowModel = self.model  # type: ignore[assignment]
        params = [p for c in model.couplings for p in c.parameters()]
        optimizer = torch.optim.Adam(params, lr=cfg.lr_min, weight_decay=cfg.weight_decay)
        history: list[float] = []
        step, total, warmup = 0, None, 0
        model.couplings.train()
        for _epoch in tqdm(range(epochs), desc="flow epochs", unit="epoch"):
            feats = epoch_features()
            n = feats.shape[0]
            if total is None:
                total = epochs * math.ceil(n / batch_size)
                warmup = int(cfg.warmup_fraction * total)
            order = torch.randperm(n, generator=generator)
            running = 0.0
            for start in range(0, n, batch_size):
                batch = feats[order[start:start + batch_size]].clone()
                if batch.shape[0] < 2 and n >= 2:
                    continue  # BatchNorm needs two samples
                for group in optimizer.param_groups:
                    group["lr"] = warmup_cosine(step, total, warmup, cfg.lr_min, cfg.lr_max)
                loss = model.flow(batch).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                optimizer.step()
                running += float(loss.detach()) * batch.shape[0]
                step += 1
            history.append(running / n)
        model.eval()
        log.info("flow: final NLL per channel %.4f after %d epochs", history[-1], epochs)
        return history

    def _features(self, images: Sequence[np.ndarray], augment: Any = None) -> torch.Tensor:
        model: FlowModel = self.model  # type: ignore[assignment]
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), 16):
                chunk = list(images[start:start + 16])
                if augment is not None:
                    chunk = [augment(image=image)["image"] for image in chunk]
                x = to_tensor(chunk, tuple(self.config.input_size)).to(self.device)
                out.append(model.features(x))
        return torch.cat(out)

    def fit_good(self, images: Sequence[np.ndarray], epochs: int | None = None,
                 batch_size: int | None = None, augment: bool | None = None,
                 **_: Any) -> dict[str, Any]:

        cfg = self.config
        epochs = epochs or cfg.epochs
        batch_size = batch_size or cfg.batch_size
        augment = cfg.augment if augment is None else augment
        if cfg.native_resolution:
            if augment:
                raise ValueError("flow: pose augmentation is not available at native "
                                 "resolution")
            return self._fit_native(images, epochs, batch_size)
        model: FlowModel = self.model  # type: ignore[assignment]
        model.eval()
        plain = self._features(images)
        model.feature_mean = plain.mean(dim=(0, 2, 3)).contiguous()
        std = plain.std(dim=(0, 2, 3))
        # a floor keeps near-constant channels from turning small test deviations into huge z
        model.feature_std = std.clamp_min(float(0.1 * std.median()) + 1e-6).contiguous()
        pose = random_pose(cfg.seed) if augment else None
        generator = torch.Generator().manual_seed(cfg.seed)

        def epoch_features() -> torch.Tensor:
            # NF+DA: a fresh random pose of every image each epoch (features recomputed)
            feats = plain if pose is None else self._features(images, pose)
            return self._standardise(feats)

        history = self._train(epoch_features, epochs, batch_size, generator)
        h, w = plain.shape[-2:]
        return {"epochs": epochs, "feature_map": [int(plain.shape[1]), int(h), int(w)],
                "stage": f"blocks.{cfg.stage}", "augment": bool(augment),
                "final_nll": round(history[-1], 5), "curves": {"nll": history}}
