"""PatchCore: nearest-neighbour distance of locally aware patch features to a memory bank of
good patches (Roth et al., 2022), with a bounded memory.

Differences from anomalib's implementation, for a CPU-only plant PC:
- the greedy k-center coreset runs on a random candidate subset with a size cap, so a fit is
  seconds instead of half an hour; the bank is stored in float16;
- nearest-neighbour search is chunked, so memory stays flat whatever the bank size;
- thresholds and the heatmap scale come from held-out good images (``AnomalyDetector``).

With ``native_resolution`` the patch features of overlapping tiles at the photo's own size are
stitched into one map (``kensa.models.tiling``) and searched as they are; the fit samples the
same number of candidate patches per image as at reduced size, so the bank stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from kensa.models.backbones import WeightsOrigin, create_backbone
from kensa.models.detectors.anomaly import AnomalyConfig, AnomalyDetector
from kensa.models.imaging import to_tensor
from kensa.models.registry import register_detector
from kensa.models.tiling import tiled

log = logging.getLogger(__name__)


class PatchCoreConfig(AnomalyConfig):
    native_capable: ClassVar[bool] = True
    layers: tuple[int, ...] = Field((2, 3), description="backbone feature levels to combine")
    neighbourhood: int = Field(3, description="patch aggregation window (local awareness)")
    coreset_ratio: float = Field(0.1, gt=0, le=1)
    max_bank: int = Field(10_000, description="memory bank cap (patches)")
    max_candidates: int = Field(60_000, description="patches the coreset selection looks at")
    projection_dim: int = Field(64, description="random projection used by coreset selection")
    num_neighbors: int = Field(1, description="k of the k-NN patch distance")


class PatchCoreModel(nn.Module):
    """Frozen backbone + memory bank; ``forward`` gives patch distance maps (B x h x w)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, neighbourhood: int,
                 num_neighbors: int = 1) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.neighbourhood = neighbourhood
        self.num_neighbors = num_neighbors
        self.register_buffer("memory_bank", torch.zeros(0, feature_dim, dtype=torch.float16))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features ``B x D x h x w`` at the first chosen level's stride."""
        features = self.backbone(x)
        size = features[0].shape[-2:]
        pooled = []
        for f in features:
            f = F.avg_pool2d(f, self.neighbourhood, stride=1, padding=self.neighbourhood // 2)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            pooled.append(f)
        return torch.cat(pooled, dim=1)

    def nearest_distance(self, patches: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Distance of each row of ``patches`` (N x D) to its k nearest bank entries (mean)."""
        if self.memory_bank.shape[0] == 0:
            raise RuntimeError("PatchCore memory bank is empty; fit the detector first")
        out = torch.empty(patches.shape[0], device=patches.device)
        k = min(self.num_neighbors, self.memory_bank.shape[0])
        for start in range(0, patches.shape[0], chunk):
            query = patches[start:start + chunk]
            best = None
            for bank_start in range(0, self.memory_bank.shape[0], 16384):
                bank = self.memory_bank[bank_start:bank_start + 16384].float()
                d = torch.cdist(query, bank).topk(min(k, bank.shape[0]), dim=1, largest=False)
                best = d.values if best is None else torch.cat([best, d.values], dim=1)
                best = best.topk(min(k, best.shape[1]), dim=1, largest=False).values
            out[start:start + chunk] = best.mean(dim=1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.distance_map(self.embed(x))

    def distance_map(self, emb: torch.Tensor) -> torch.Tensor:
        """Patch distances ``B x h x w`` of embeddings ``B x D x h x w``."""
        b, d, h, w = emb.shape
        patches = emb.permute(0, 2, 3, 1).reshape(-1, d)
        return self.nearest_distance(patches).view(b, h, w)


def extend_coreset(bank: torch.Tensor, candidates: torch.Tensor, size: int,
                   chunk: int = 4096) -> torch.Tensor:
    """Indices of ``size`` rows of ``candidates`` continuing a k-center greedy coreset whose
    centres so far are ``bank``: each step takes the candidate farthest from every centre."""
    n = candidates.shape[0]
    size = min(size, n)
    min_dist = torch.full((n,), float("inf"), device=candidates.device)
    for start in range(0, bank.shape[0], chunk):
        d = torch.cdist(candidates, bank[start:start + chunk].float()).amin(dim=1)
        min_dist = torch.minimum(min_dist, d)
    selected = torch.empty(size, dtype=torch.long)
    for i in range(size):
        idx = int(torch.argmax(min_dist))
        selected[i] = idx
        min_dist = torch.minimum(min_dist, (candidates - candidates[idx]).norm(dim=1))
    return selected


def greedy_coreset(features: torch.Tensor, size: int, projection_dim: int = 64,
                   seed: int = 0) -> torch.Tensor:
    """Indices of a k-center greedy coreset of ``features`` (N x D), on a random projection."""
    n = features.shape[0]
    if size >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    if features.shape[1] > projection_dim:
        projection = torch.randn(features.shape[1], projection_dim, generator=generator)
        projection /= projection_dim**0.5
        reduced = features @ projection.to(features.device, features.dtype)
    else:
        reduced = features
    selected = torch.empty(size, dtype=torch.long)
    sq_norms = (reduced * reduced).sum(dim=1)
    idx = int(torch.randint(n, (1,), generator=generator))
    min_dist = torch.full((n,), float("inf"), device=reduced.device)
    for i in tqdm(range(size), desc="coreset", leave=False, mininterval=1.0):
        selected[i] = idx
        center = reduced[idx]
        dist = sq_norms - 2 * (reduced @ center) + sq_norms[idx]  # squared distances
        min_dist = torch.minimum(min_dist, dist)
        idx = int(torch.argmax(min_dist))
    return selected


@register_detector(
    "patchcore",
    task="anomaly",
    learns_from="good-only",
    description="PatchCore: k-NN distance to a coreset of good patch features",
    defaults={"pose_copies": 4},
    quick={"input_size": (64, 256), "coreset_ratio": 0.25, "max_bank": 2048, "pose_copies": 0},
)
class PatchCore(AnomalyDetector):
    """PatchCore on ImageNet EfficientNet-Lite features, fit on good images only."""

    Config = PatchCoreConfig
    config: PatchCoreConfig

    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        backbone, origin = create_backbone(
            self.config.backbone, weights, features_only=True, out_indices=self.config.layers
        )
        dim = sum(backbone.feature_info.channels())
        model = PatchCoreModel(backbone, dim, self.config.neighbourhood,
                               self.config.num_neighbors)
        return model, origin

    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.native_resolution:
            return self.model.distance_map(self._native_embed(x))
        return self.model(x)

    def _native_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stitched patch features of one photo at its own size (padded to the tile grid)."""
        return tiled(self.model.embed, x, self.config.tile)[0]

    def _embed_images(self, images: Sequence[np.ndarray], batch_size: int):
        """Patch embeddings batch by batch (native mode: one photo at a time)."""
        if self.config.native_resolution:
            for image in images:
                yield self._native_embed(self.native_tensor(image))
            return
        for start in range(0, len(images), batch_size):
            x = to_tensor(list(images[start:start + batch_size]),
                          tuple(self.config.input_size)).to(self.device)
            yield self.model.embed(x)

    @torch.inference_mode()
    def fit_good(self, images: Sequence[np.ndarray], batch_size: int = 8,
                 **_: Any) -> dict[str, Any]:
        model: PatchCoreModel = self.model  # type: ignore[assignment]
        model.eval()
        generator = torch.Generator().manual_seed(self.config.seed)
        collected: list[torch.Tensor] = []
        total = 0
        per_image_keep = None
        for emb in tqdm(self._embed_images(images, batch_size), desc="patchcore features",
                        unit="batch"):
            patches = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float().cpu()
            total += patches.shape[0]
            if per_image_keep is None:  # bound candidate memory: sample evenly per batch
                per_patch = patches.shape[0] / emb.shape[0]
                per_image_keep = max(1, int(self.config.max_candidates / max(1, len(images))))
                per_image_keep = min(per_image_keep, int(per_patch))
            keep = per_image_keep * emb.shape[0]
            if keep < patches.shape[0]:
                patches = patches[torch.randperm(patches.shape[0], generator=generator)[:keep]]
            collected.append(patches)
        candidates = torch.cat(collected)
        size = min(self.config.max_bank, max(1, int(total * self.config.coreset_ratio)),
                   candidates.shape[0])
        chosen = greedy_coreset(candidates.to(self.device), size, self.config.projection_dim,
                                self.config.seed)
        model.memory_bank = candidates[chosen].to(self.device, torch.float16).contiguous()
        log.info("patchcore bank: %d of %d patches (%d candidates), %.1f MB", size, total,
                 candidates.shape[0], model.memory_bank.numel() * 2 / 1e6)
        return {"patches_total": total, "candidates": int(candidates.shape[0]),
                "memory_bank": int(size),
                "memory_bank_mb": round(model.memory_bank.numel() * 2 / 1e6, 2)}

    @torch.inference_mode()
    def update_good(self, images: Sequence[np.ndarray], batch_size: int = 8,
                    **_: Any) -> dict[str, Any]:
        """Grow the memory bank by the new images' patches that lie farthest from it (the
        greedy coreset continued: ``coreset_ratio`` of their patches, within ``max_bank``)."""
        model: PatchCoreModel = self.model  # type: ignore[assignment]
        model.eval()
        collected = []
        for start in range(0, len(images), batch_size):
            x = to_tensor(list(images[start:start + batch_size]),
                          tuple(self.config.input_size)).to(self.device)
            emb = model.embed(x)
            collected.append(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float())
        candidates = torch.cat(collected)
        if candidates.shape[0] > self.config.max_candidates:
            generator = torch.Generator().manual_seed(self.config.seed)
            keep = torch.randperm(candidates.shape[0], generator=generator)
            candidates = candidates[keep[:self.config.max_candidates].to(candidates.device)]
        before = int(model.memory_bank.shape[0])
        room = max(0, self.config.max_bank - before)
        size = min(room, max(1, int(candidates.shape[0] * self.config.coreset_ratio)))
        if size:
            chosen = extend_coreset(model.memory_bank, candidates, size)
            added = candidates[chosen.to(candidates.device)].to(self.device, torch.float16)
            model.memory_bank = torch.cat([model.memory_bank, added]).contiguous()
        log.info("patchcore bank: %d -> %d patches (%d new candidates)", before,
                 model.memory_bank.shape[0], candidates.shape[0])
        return {"memory_bank_before": before, "memory_bank": int(model.memory_bank.shape[0]),
                "patches_added": int(size), "bank_full": room == 0}
