"""Per-class defect masks: a segmentation-models-pytorch U-Net, one sigmoid channel per class.

Trained with BCE + Dice (seed 003). Post-processing per class as the Severstal winners did:
a probability threshold, small connected components dropped, and the whole mask dropped when
its total area is below a minimum; all three are tuned on validation (Kaggle dice) and saved.
Areas are fractions of the image so the same settings hold at input and original size.
Large images use a full aspect-kept input (sides multiples of 32), e.g. 256x1600 strips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import segmentation_models_pytorch as smp
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage
from torch import nn

from kensa.models.backbones import WeightsOrigin, WeightsUnavailable, create_backbone
from kensa.models.base import Detector, DetectorConfig, Postprocess
from kensa.models.data.samples import Sample
from kensa.models.data.tiling import kept_tiles, stitch
from kensa.models.decision import SEGMENT_BAND, cut
from kensa.models.detectors.classifier import STEEL_CLASSES
from kensa.models.detectors.fitting import prepare_training_data, train_loop
from kensa.models.imaging import resize_map, to_tensor
from kensa.models.registry import register_detector
from kensa.models.types import Detection, Finding, Task, Verdict

log = logging.getLogger(__name__)

QUICK = {"input_size": (64, 64), "epochs": 2, "batch_size": 4, "patience": 2,
         "decoder_channels": (64, 32, 16, 16, 8)}
THRESHOLD_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_AREA_GRID = (0.0, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02)
MIN_COMPONENT_GRID = (0.0, 0.0002, 0.001)
TUNING_BUDGET_BYTES = 400_000_000
FLIP_DIMS = ((-1,), (-2,), (-2, -1))
"""Flip test-time augmentation: horizontal, vertical, both."""


class SegmenterConfig(DetectorConfig):
    labels: list[str] = Field(default_factory=lambda: list(STEEL_CLASSES))
    input_size: tuple[int, int] = (256, 256)
    encoder: str = Field("tu-efficientnet_b3",
                         description="smp encoder; 'tu-<timm name>' uses timm")
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    dice_weight: float = Field(1.0, description="loss = BCE + dice_weight x Dice")
    balance: Literal["sampler", "none"] = Field(
        "sampler", description="draw good and each defect class about equally often")
    hflip: bool = True
    vflip: bool = True
    rotate: float = 0.0
    photometric: bool = True
    workers: int = 0
    seed: int = 0
    augment: str = Field("default", description="augmentation recipe "
                         "(kensa.models.data.recipes: default, flips, blackout, paste, ...)")
    tiles: int = Field(0, ge=0, description="cut each photo into this many tiles along its "
                       "long side for training and inference (seed 003: 6); 0 = whole photo")
    dark_tile: float = Field(10.0, description="tiles with mean gray <= this are skipped")

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, size: tuple[int, int]) -> tuple[int, int]:
        if any(s % 32 for s in size):
            raise ValueError(f"U-Net input sides must be multiples of 32, got {size}")
        return size


class ClassPost(BaseModel):
    """Post-processing of one class channel."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, description="pixel probability threshold")
    min_component: float = Field(0.0, description="drop components smaller than this "
                                                  "fraction of the image")
    min_area: float = Field(0.0, description="drop the whole mask when its area is below this "
                                             "fraction of the image")


class SegmenterPostprocess(Postprocess):
    classes: dict[str, ClassPost] = Field(default_factory=dict)
    review_band: tuple[float, float] = Field(
        SEGMENT_BAND, description="per pixel, probability/threshold >= high is 'defect', in "
        "[low, high) 'review' (kensa.models.decision): masks that appear only at threshold x "
        "low give 'review'")
    score: Literal["max", "mean"] = Field("max", description="finding score from its pixels")
    gate: dict[str, float] = Field(default_factory=dict, description="per-class probability "
                                   "thresholds of a gating classifier (kensa.models.severstal)")
    tta_flips: bool = Field(False, description="average the maps of the photo and its "
                            "horizontal, vertical and double flips (test-time augmentation)")
    max_findings: int = Field(32, ge=1, description="findings per label at most: past it, the "
                              "lower-scoring components are merged into one finding")


@register_detector("segmenter_lite0", task=Task.SEGMENT, learns_from="labelled",
                   description="U-Net with an EfficientNet-Lite0 encoder, packaged ImageNet "
                               "weights", defaults={"encoder": "tu-efficientnet_lite0"},
                   quick=QUICK)
@register_detector("segmenter", task=Task.SEGMENT, learns_from="labelled",
                   description="U-Net with an EfficientNet-B3 encoder: per-class defect masks",
                   defaults={"encoder": "tu-efficientnet_b3"}, quick=QUICK)
class DefectSegmenter(Detector):
    """U-Net (smp) with per-class thresholds and area filters tuned on validation."""

    Config = SegmenterConfig
    Post = SegmenterPostprocess
    config: SegmenterConfig
    post: SegmenterPostprocess

    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        cfg = self.config
        if not cfg.labels:
            raise ValueError("a segmenter needs at least one label")
        if not cfg.encoder.startswith("tu-"):
            if weights not in {"hub", "none", "artifact"}:
                raise WeightsUnavailable(f"smp encoder {cfg.encoder!r} takes weights "
                                         f"hub|none only; use a 'tu-' timm encoder")
            model = smp.Unet(cfg.encoder, encoder_weights="imagenet" if weights == "hub"
                             else None, classes=len(cfg.labels),
                             decoder_channels=list(cfg.decoder_channels))
            origin = {"hub": WeightsOrigin("hub", f"smp {cfg.encoder} ImageNet"),
                      "none": WeightsOrigin("none", "random init"),
                      "artifact": WeightsOrigin("artifact", "loaded from a saved artifact")}
            return model, origin[weights]
        model = smp.Unet(cfg.encoder, encoder_weights=None, classes=len(cfg.labels),
                         decoder_channels=list(cfg.decoder_channels))
        arch = cfg.encoder.removeprefix("tu-")
        if weights == "artifact":
            return model, WeightsOrigin("artifact", "loaded from a saved artifact")
        backbone, origin = create_backbone(arch, weights)
        if origin.source != "none":
            load_encoder(model, backbone)
        return model, origin

    # -- training ------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None,
            **options: Any) -> dict[str, Any]:
        """Train on ``train`` (good images = empty masks), stop early on validation dice and
        tune the post-processing on ``val``. Options: ``out_dir``, ``resume``, ``progress``,
        ``on_epoch`` (called with each finished epoch's number)."""

        cfg = self.config
        train, val, _, val_ds, loader = prepare_training_data(
            cfg, train, val, "masks", balanced=cfg.balance == "sampler")
        bce = smp.losses.SoftBCEWithLogitsLoss()
        dice = smp.losses.DiceLoss(mode="multilabel", from_logits=True)

        def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return bce(logits, target) + cfg.dice_weight * dice(logits, target)

        def validate() -> dict[str, float]:
            losses, scores = [], []
            for x, y, logits in self._iterate(val_ds):
                losses.append(float(loss_fn(logits, y)) * len(x))
                pred = (logits > 0).cpu().numpy()
                scores.append(kaggle_dice(pred, y.cpu().numpy() > 0.5))
            return {"val_loss": sum(losses) / max(1, len(val_ds)),
                    "val_dice": float(np.concatenate(scores).mean()) if scores else 0.0}

        report = train_loop(self.model, loader, loss_fn, validate, monitor="val_dice",
                            epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            patience=cfg.patience, device=self.device,
                            out_dir=options.get("out_dir"), resume=options.get("resume", False),
                            config={"kind": self.kind, **cfg.model_dump(mode="json")},
                            progress=options.get("progress", True),
                            on_epoch=options.get("on_epoch"))
        report["postprocess"] = self.tune_postprocess(val_ds)
        report.update(n_train=len(train), n_val=len(val))
        return report

    @torch.inference_mode()
    def _iterate(self, dataset, batch_size: int | None = None):
        """``(x, y, logits)`` batches over a ``SampleDataset`` in order."""
        self.model.eval()
        batch_size = batch_size or max(1, self.config.batch_size)
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            x = torch.stack([it[0] for it in items]).to(self.device)
            y = torch.stack([it[1] for it in items]).to(self.device)
            yield x, y, self.model(x).float()

    def tune_postprocess(self, val_ds) -> dict[str, dict[str, float]]:
        """Grid-search threshold, minimum component and minimum mask area per class for the
        best Kaggle dice on validation (at input size; areas are image fractions)."""
        per_image = val_ds.size[0] * val_ds.size[1] * len(self.labels)
        limit = max(1, TUNING_BUDGET_BYTES // per_image)
        indices = np.arange(len(val_ds))
        if len(indices) > limit:
            indices = np.sort(np.random.default_rng(self.config.seed).choice(
                indices, limit, replace=False))
        subset = torch.utils.data.Subset(val_ds, indices.tolist())
        probs, truth = [], []
        for _, y, logits in self._iterate(subset):
            probs.append((torch.sigmoid(logits) * 255).round().to(torch.uint8).cpu().numpy())
            truth.append(y.cpu().numpy() > 0.5)
        prob = np.concatenate(probs).astype(np.float32) / 255
        gt = np.concatenate(truth)
        pixels = prob.shape[2] * prob.shape[3]
        for c, label in enumerate(self.labels):
            best = (-1.0, ClassPost())
            gt_area = gt[:, c].reshape(len(gt), -1).sum(axis=1)
            for threshold in THRESHOLD_GRID:
                comps = [_components(prob[i, c] >= threshold, gt[i, c]) for i in range(len(gt))]
                for min_comp in MIN_COMPONENT_GRID:
                    for min_area in MIN_AREA_GRID:
                        dices = []
                        for (sizes, inters), g in zip(comps, gt_area, strict=True):
                            keep = sizes >= min_comp * pixels
                            area, inter = sizes[keep].sum(), inters[keep].sum()
                            if area < min_area * pixels:
                                area, inter = 0, 0
                            dices.append(1.0 if area + g == 0 else 2 * inter / (area + g))
                        score = float(np.mean(dices))
                        if score > best[0] + 1e-9:
                            best = (score, ClassPost(threshold=threshold,
                                                     min_component=min_comp, min_area=min_area))
            self.post.classes[label] = best[1]
            log.info("%s %s post-processing: %s (val dice %.4f)", self.name, label,
                     best[1].model_dump(), best[0])
        return {label: p.model_dump() for label, p in self.post.classes.items()}

    # -- run-time decisions ----------------------------------------------------------------
    def class_post(self, label: str) -> ClassPost:
        return self.post.classes.get(label) or ClassPost()

    def thresholds(self) -> dict[str, float]:
        return {label: self.class_post(label).threshold for label in self.labels}

    def set_threshold(self, value: float, label: str | None = None) -> None:
        value = self.check_threshold(value)
        targets = self.labels if label is None else [label]
        for lab in targets:
            if lab not in self.labels:
                raise ValueError(f"unknown label {lab!r}; labels: {self.labels}")
            self.post.classes[lab] = self.class_post(lab).model_copy(
                update={"threshold": float(value)})

    @torch.inference_mode()
    def probability_maps(self, images: Sequence[np.ndarray], batch_size: int = 4
                         ) -> list[np.ndarray]:
        """Per-class sigmoid maps ``C x H x W``: at input size, or with ``tiles`` at the
        photo's size (tile maps stitched; dark tiles 0)."""
        if not self.config.tiles:
            return self._maps(images, batch_size)
        out = []
        for image in images:
            pieces = kept_tiles(image, self.config.tiles, self.config.dark_tile)
            maps = self._maps([t for t, _ in pieces], batch_size)
            size = image.shape[:2]
            tiles = [np.stack([resize_map(c, t.shape[:2]) for c in m], axis=-1)
                     for m, (t, _) in zip(maps, pieces, strict=True)]
            full = stitch(tiles, [s for _, s in pieces], (*size, len(self.labels)))
            out.append(np.ascontiguousarray(full.transpose(2, 0, 1), dtype=np.float32))
        return out

    def _maps(self, images: Sequence[np.ndarray], batch_size: int) -> list[np.ndarray]:
        self.model.eval()
        out: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            x = to_tensor(list(images[start:start + batch_size]),
                          tuple(self.config.input_size)).to(self.device)
            prob = torch.sigmoid(self.model(x)).float()
            if self.post.tta_flips:
                for dims in FLIP_DIMS:
                    prob += torch.sigmoid(self.model(x.flip(dims))).float().flip(dims)
                prob /= 1 + len(FLIP_DIMS)
            out.extend(prob.cpu().numpy())
        return out

    def masks_from_probs(self, prob: np.ndarray, label: str, scale: float = 1.0) -> np.ndarray:
        """The class mask after thresholding (``threshold x scale``) and area filters."""
        p = self.class_post(label)
        pixels = prob.size
        regions, count = ndimage.label(prob >= p.threshold * scale)
        if count == 0:
            return np.zeros(prob.shape, bool)
        sizes = np.bincount(regions.ravel(), minlength=count + 1)
        keep = sizes >= max(1.0, p.min_component * pixels)
        keep[0] = False
        mask = keep[regions]
        if mask.sum() < p.min_area * pixels:
            mask[:] = False
        return mask

    def predict(self, image: np.ndarray) -> Detection:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 4
                      ) -> list[Detection]:
        t0 = time.perf_counter()
        maps = self.probability_maps(images, batch_size)
        model_ms = (time.perf_counter() - t0) * 1000 / max(1, len(images))
        return [self._detection(image, prob, model_ms) for image, prob in zip(images, maps,
                                                                                strict=True)]

    def _detection(self, image: np.ndarray, prob: np.ndarray, model_ms: float) -> Detection:
        t0 = time.perf_counter()
        size = image.shape[:2]
        findings: list[Finding] = []
        verdicts: list[Verdict] = []
        band = self.post.review_band
        low, high = cut(1.0, band, Verdict.REVIEW), cut(1.0, band, Verdict.DEFECT)
        for c, label in enumerate(self.labels):
            full = np.clip(resize_map(prob[c], size), 0, 1)
            mask = self.masks_from_probs(full, label, high)
            verdict = Verdict.DEFECT
            if not mask.any() and low < high:
                mask = self.masks_from_probs(full, label, low)
                verdict = Verdict.REVIEW
            if not mask.any():
                continue
            verdicts.append(verdict)
            findings.extend(self._findings(label, full, mask))
        findings.sort(key=lambda f: f.score, reverse=True)
        return Detection(detector=self.name, version=self.version, task=Task.SEGMENT,
                         verdict=Verdict.combine(verdicts), findings=findings,
                         timings_ms={"model": model_ms,
                                     "post": (time.perf_counter() - t0) * 1000})

    def _findings(self, label: str, prob: np.ndarray, mask: np.ndarray) -> list[Finding]:
        """One finding per connected component of ``mask``, scored from ``prob`` (statistics
        in one pass over the labelled image); past ``max_findings`` the lower-scoring rest is
        merged into one finding, so a noisy map costs one mask, not thousands."""
        regions, count = ndimage.label(mask)
        if count == 0:
            return []
        index = np.arange(1, count + 1)
        stat = ndimage.maximum if self.post.score == "max" else ndimage.mean
        scores = np.asarray(stat(prob, regions, index), dtype=np.float64)
        areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
        boxes = ndimage.find_objects(regions)
        order = np.argsort(-scores, kind="stable")
        limit = self.post.max_findings
        kept, rest = (order, order[:0]) if count <= limit else (order[:limit - 1],
                                                                order[limit - 1:])
        findings = []
        for i in kept:
            box = boxes[i]
            component = np.zeros(mask.shape, bool)
            component[box] = regions[box] == i + 1
            findings.append(Finding(label=label, detector=self.name, area_px=int(areas[i]),
                                    score=float(scores[i]),
                                    bbox=(box[1].start, box[0].start, box[1].stop, box[0].stop),
                                    mask=component))
        if rest.size:
            merged = np.isin(regions, rest + 1)
            rows, cols = np.nonzero(merged)
            values = prob[merged]
            findings.append(Finding(
                label=label, detector=self.name, area_px=int(areas[rest].sum()),
                score=float(values.max() if self.post.score == "max" else values.mean()),
                bbox=(int(cols.min()), int(rows.min()), int(cols.max()) + 1,
                      int(rows.max()) + 1), mask=merged))
        return findings

    def label_masks(self, detection: Detection, size: tuple[int, int]) -> dict[str, np.ndarray]:
        """Union mask per label of a detection (for RLE export and metrics)."""
        out: dict[str, np.ndarray] = {}
        for finding in detection.findings:
            if finding.mask is None:
                continue
            out.setdefault(finding.label, np.zeros(size, bool))
            out[finding.label] |= finding.mask
        return out


def load_encoder(unet: nn.Module, backbone: nn.Module) -> None:
    """Copy a timm classifier's weights into the U-Net's timm encoder by name; every encoder
    tensor must be covered (the head's conv/classifier are not used by the encoder)."""
    encoder = unet.encoder.model
    state = backbone.state_dict()
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"backbone checkpoint lacks {len(missing)} encoder tensors, e.g. "
                         f"{missing[:3]}")
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)


def _components(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes of the connected components of ``pred`` and their overlaps with ``gt``."""
    regions, count = ndimage.label(pred)
    if count == 0:
        return np.zeros(0), np.zeros(0)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    inters = np.bincount(regions[gt].ravel(), minlength=count + 1)[1:]
    return sizes.astype(np.float64), inters.astype(np.float64)


def kaggle_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice per (image, class) pair as Severstal scored it: both empty = 1.
    ``pred``/``truth`` are bool ``N x C x H x W``; returns ``N x C``."""
    pred = pred.reshape(*pred.shape[:2], -1)
    truth = truth.reshape(*truth.shape[:2], -1)
    inter = (pred & truth).sum(-1)
    total = pred.sum(-1) + truth.sum(-1)
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))
