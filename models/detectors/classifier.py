"""Multi-label defect classifier: a timm convnet with a sigmoid head and Grad-CAM evidence.

One image may carry several defects; "no defect" is no label at or above its threshold.
Per-class thresholds are tuned on validation (F1 optimum) and saved with the detector.
Seed 003's EfficientNet-B3 is the default; ``classifier_lite0/1/2`` start from ImageNet
weights packaged for offline use; ``classifier_inception_v3`` follows seed 000.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.special import expit
from sklearn.metrics import average_precision_score, precision_recall_curve
from torch import nn

from kensa.models.backbones import WeightsOrigin, create_backbone
from kensa.models.base import Detector, DetectorConfig, Postprocess
from kensa.models.data.samples import Sample
from kensa.models.data.tiling import kept_tiles, predict_tiled
from kensa.models.decision import CLASSIFY_BAND, verdict_for
from kensa.models.detectors.fitting import prepare_training_data, train_loop
from kensa.models.detectors.gradcam import grad_cam
from kensa.models.imaging import resize_map, to_tensor
from kensa.models.registry import register_detector
from kensa.models.types import Detection, EvidenceLayer, Finding, Task, Verdict

log = logging.getLogger(__name__)

STEEL_CLASSES = ("pitted_surface", "crazing", "scratches", "patches")
"""Severstal's four classes (seed 003), the default until a dataset names its own."""

FLIP_DIMS = ((-1,), (-2,), (-2, -1))
"""Flip test-time augmentation: horizontal, vertical, both."""
QUICK = {"input_size": (64, 64), "epochs": 2, "batch_size": 8, "patience": 2}


class ClassifierConfig(DetectorConfig):
    labels: list[str] = Field(default_factory=lambda: list(STEEL_CLASSES))
    input_size: tuple[int, int] = (256, 256)
    arch: str = Field("efficientnet_b3", description="timm architecture")
    drop_rate: float = 0.3
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = Field(5, description="epochs without validation gain before stopping")
    balance: Literal["pos_weight", "sampler", "both", "none"] = Field(
        "pos_weight", description="imbalance handling: BCE pos_weight and/or balanced sampling")
    hflip: bool = True
    vflip: bool = True
    rotate: float = Field(0.0, description="max rotation in degrees; 0 = none (defects have "
                                           "a direction)")
    photometric: bool = True
    workers: int = 0
    seed: int = 0
    augment: str = Field("default", description="augmentation recipe "
                         "(kensa.models.data.recipes: default, flips, blackout, paste, ...)")
    tiles: int = Field(0, ge=0, description="cut each photo into this many tiles along its "
                       "long side for training and inference (seed 003: 6); 0 = whole photo")
    dark_tile: float = Field(10.0, description="tiles with mean gray <= this are skipped")


class ClassifierPostprocess(Postprocess):
    thresholds: dict[str, float] = Field(default_factory=dict,
                                         description="per-label probability thresholds")
    default_threshold: float = 0.5
    review_band: tuple[float, float] = Field(
        CLASSIFY_BAND, description="probability/threshold in [low, high) gives 'review', "
        ">= high 'defect' (kensa.models.decision)")
    heatmaps: bool = Field(True, description="Grad-CAM per predicted label")
    tta_flips: bool = Field(False, description="average the probabilities of the photo and "
                            "its horizontal, vertical and double flips")


@register_detector("classifier_inception_v3", task=Task.CLASSIFY, learns_from="labelled",
                   description="InceptionV3 multi-label classifier with Grad-CAM (seed 000)",
                   defaults={"arch": "inception_v3", "input_size": (299, 299)},
                   quick={**QUICK, "input_size": (96, 96)})
@register_detector("classifier_lite2", task=Task.CLASSIFY, learns_from="labelled",
                   description="EfficientNet-Lite2 multi-label classifier, packaged ImageNet "
                               "weights", defaults={"arch": "efficientnet_lite2"}, quick=QUICK)
@register_detector("classifier_lite1", task=Task.CLASSIFY, learns_from="labelled",
                   description="EfficientNet-Lite1 multi-label classifier, packaged ImageNet "
                               "weights", defaults={"arch": "efficientnet_lite1"}, quick=QUICK)
@register_detector("classifier_lite0", task=Task.CLASSIFY, learns_from="labelled",
                   description="EfficientNet-Lite0 multi-label classifier, packaged ImageNet "
                               "weights", defaults={"arch": "efficientnet_lite0"}, quick=QUICK)
@register_detector("classifier", task=Task.CLASSIFY, learns_from="labelled",
                   description="EfficientNet-B3 multi-label defect classifier with Grad-CAM",
                   defaults={"arch": "efficientnet_b3"}, quick=QUICK)
class DefectClassifier(Detector):
    """Multi-label sigmoid classifier over a timm backbone, with Grad-CAM evidence."""

    Config = ClassifierConfig
    Post = ClassifierPostprocess
    config: ClassifierConfig
    post: ClassifierPostprocess

    def build_model(self, weights: str) -> tuple[nn.Module, WeightsOrigin]:
        if not self.config.labels:
            raise ValueError("a classifier needs at least one label")
        return create_backbone(self.config.arch, weights, num_classes=len(self.config.labels),
                               drop_rate=self.config.drop_rate)

    # -- training ------------------------------------------------------------------------------
    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None,
            **options: Any) -> dict[str, Any]:
        """Train on ``train``, stop early and tune per-class thresholds on ``val`` (held out
        from ``train`` when not given). Options: ``out_dir`` (checkpoint + curves),
        ``resume``, ``progress``, ``on_epoch`` (called with each finished epoch's number)."""

        cfg = self.config
        train, val, train_ds, val_ds, loader = prepare_training_data(
            cfg, train, val, "labels", balanced=cfg.balance in {"sampler", "both"})
        targets = np.stack([train_ds.label_vector(i) for i in range(len(train_ds))])
        positives = targets.sum(axis=0)
        pos_weight = None
        if cfg.balance in {"pos_weight", "both"}:
            ratio = (len(targets) - positives) / np.clip(positives, 1, None)
            pos_weight = torch.tensor(np.clip(ratio, 1.0, 20.0), dtype=torch.float32,
                                      device=self.device)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        val_targets = np.stack([val_ds.label_vector(i) for i in range(len(val_ds))])

        def validate() -> dict[str, float]:
            logits = self._logits_dataset(val_ds)
            loss = float(loss_fn(torch.from_numpy(logits).to(self.device),
                                 torch.from_numpy(val_targets).to(self.device)))
            return {"val_loss": loss, "val_map": mean_average_precision(val_targets, logits)}

        report = train_loop(self.model, loader, loss_fn, validate, monitor="val_map",
                            epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            patience=cfg.patience, device=self.device,
                            out_dir=options.get("out_dir"), resume=options.get("resume", False),
                            config={"kind": self.kind, **cfg.model_dump(mode="json")},
                            progress=options.get("progress", True),
                            on_epoch=options.get("on_epoch"))
        probs = sigmoid(self._logits_dataset(val_ds))
        report["thresholds"] = self.tune_thresholds(val_targets, probs)
        report.update(n_train=len(train), n_val=len(val),
                      pos_weight=None if pos_weight is None else pos_weight.tolist())
        return report

    @torch.inference_mode()
    def _logits_dataset(self, dataset, batch_size: int | None = None) -> np.ndarray:
        self.model.eval()
        batch_size = batch_size or max(1, self.config.batch_size)
        out = []
        for start in range(0, len(dataset), batch_size):
            x = torch.stack([dataset[i][0] for i in range(start, min(len(dataset),
                                                                     start + batch_size))])
            out.append(self.model(x.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def tune_thresholds(self, targets: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        """Per-class F1-optimal thresholds on validation; classes without positives keep the
        default."""
        for c, label in enumerate(self.labels):
            y = targets[:, c]
            if y.sum() == 0 or y.sum() == len(y):
                self.post.thresholds[label] = self.post.default_threshold
                continue
            precision, recall, cuts = precision_recall_curve(y, probs[:, c])
            f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1],
                                                              1e-12, None)
            cut = float(cuts[int(np.argmax(f1))])
            # The F1 optimum sits on the lowest accepted score; move halfway (in logits) to
            # the next lower score so a well-separated class is not cut at 0.99.
            below = probs[:, c][probs[:, c] < cut]
            if below.size:
                cut = float(sigmoid((_logit(cut) + _logit(float(below.max()))) / 2))
            self.post.thresholds[label] = float(np.clip(cut, 0.01, 0.99))
        log.info("%s thresholds: %s", self.name,
                 {k: round(v, 3) for k, v in self.post.thresholds.items()})
        return dict(self.post.thresholds)

    # -- run-time decisions ----------------------------------------------------------------
    def thresholds(self) -> dict[str, float]:
        return {label: self.threshold_for(label) for label in self.labels}

    def threshold_for(self, label: str) -> float:
        return self.post.thresholds.get(label, self.post.default_threshold)

    def set_threshold(self, value: float, label: str | None = None) -> None:
        value = self.check_threshold(value)
        if label is None:
            for lab in self.labels:
                self.post.thresholds[lab] = float(value)
        elif label in self.labels:
            self.post.thresholds[label] = float(value)
        else:
            raise ValueError(f"unknown label {label!r}; labels: {self.labels}")

    def decide(self, probs: np.ndarray) -> tuple[Verdict, list[tuple[str, float, Verdict]]]:
        """Verdict and the labels at or near their thresholds ``(label, prob, verdict)``."""
        hits = []
        for label, p in zip(self.labels, probs, strict=True):
            verdict = verdict_for(float(p), self.threshold_for(label), self.post.review_band)
            if verdict != Verdict.OK:
                hits.append((label, float(p), verdict))
        hits.sort(key=lambda h: h[1], reverse=True)
        return Verdict.combine([h[2] for h in hits]), hits

    @torch.inference_mode()
    def probabilities(self, images: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """Sigmoid probabilities, ``N x labels``; with ``tiles``, the maximum over a photo's
        non-dark tiles (an all-dark photo scores 0)."""
        if self.config.tiles:
            rows = []
            for image in images:
                tiles = [t for t, _ in kept_tiles(image, self.config.tiles,
                                                  self.config.dark_tile)]
                probs = self._probabilities(tiles, batch_size)
                rows.append(probs.max(axis=0) if len(probs) else np.zeros(len(self.labels),
                                                                          np.float32))
            return np.stack(rows) if rows else np.zeros((0, len(self.labels)), np.float32)
        return self._probabilities(images, batch_size)

    def _probabilities(self, images: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        self.model.eval()
        out = []
        for start in range(0, len(images), batch_size):
            x = to_tensor(list(images[start:start + batch_size]), tuple(self.config.input_size))
            out.append(self._sigmoid(x.to(self.device)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    @torch.inference_mode()
    def _sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid outputs of a batch, averaged over flips when ``tta_flips`` is on."""
        prob = torch.sigmoid(self.model(x)).float()
        if self.post.tta_flips:
            for dims in FLIP_DIMS:
                prob += torch.sigmoid(self.model(x.flip(dims))).float()
            prob /= 1 + len(FLIP_DIMS)
        return prob

    def predict(self, image: np.ndarray) -> Detection:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 8
                      ) -> list[Detection]:
        if self.config.tiles:
            return [predict_tiled(lambda tiles: self._predict_whole(tiles, batch_size), image,
                                  self.config.tiles, self.config.dark_tile) for image in images]
        return self._predict_whole(images, batch_size)

    def _predict_whole(self, images: Sequence[np.ndarray], batch_size: int
                       ) -> list[Detection]:
        out: list[Detection] = []
        for start in range(0, len(images), batch_size):
            out.extend(self._predict_chunk(list(images[start:start + batch_size])))
        return out

    def _predict_chunk(self, images: list[np.ndarray]) -> list[Detection]:
        self.model.eval()
        t0 = time.perf_counter()
        x = to_tensor(images, tuple(self.config.input_size)).to(self.device)
        with torch.no_grad():  # not inference mode: Grad-CAM reuses the features
            features = self.model.forward_features(x)
            prob = torch.sigmoid(self.model.forward_head(features)).float()
            if self.post.tta_flips:
                for dims in FLIP_DIMS:
                    prob += torch.sigmoid(self.model(x.flip(dims))).float()
                prob /= 1 + len(FLIP_DIMS)
        probs = prob.cpu().numpy()
        model_ms = (time.perf_counter() - t0) * 1000 / len(images)
        decisions = [self.decide(p) for p in probs]
        t1 = time.perf_counter()
        cams: list[dict[int, np.ndarray]] = [{} for _ in images]
        if self.post.heatmaps:
            wanted = [[self.labels.index(h[0]) for h in hits] for _, hits in decisions]
            if any(wanted):
                cams = grad_cam(self.model, x, wanted, features)
        cam_ms = (time.perf_counter() - t1) * 1000 / len(images)
        detections = []
        for image, (verdict, hits), cam in zip(images, decisions, cams, strict=True):
            evidence = [EvidenceLayer("gradcam", self.labels[c],
                                      np.clip(resize_map(m, image.shape[:2]), 0, 1), (0.0, 1.0))
                        for c, m in cam.items()]
            findings = [Finding(label=label, score=p, detector=self.name)
                        for label, p, _ in hits]
            detections.append(Detection(
                detector=self.name, version=self.version, task=Task.CLASSIFY, verdict=verdict,
                findings=findings, evidence=evidence,
                timings_ms={"model": model_ms, "gradcam": cam_ms}))
        return detections


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return expit(logits)


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Macro average precision over classes that have positives (threshold-free)."""
    values = [average_precision_score(targets[:, c], scores[:, c])
              for c in range(targets.shape[1]) if targets[:, c].sum() > 0]
    return float(np.mean(values)) if values else 0.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))
