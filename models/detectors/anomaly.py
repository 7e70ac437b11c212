"""Shared machinery of good-only anomaly detectors.

A subclass provides the module and ``score_maps`` (raw scores at any resolution) plus
``fit_good``; this base calibrates thresholds from held-out good images (or at the F1 optimum
when labelled defects are given), keeps heatmaps on a fixed calibrated scale, turns maps into
findings and decides the verdict with ``kensa.models.decision``: its default review band
``(1.0, 1.15)`` sits just *above* the threshold (a score just past a good-only threshold may be
a good outlier, so a person looks first).
"""

from __future__ import annotations

import logging
import math
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from scipy import ndimage
from sklearn.metrics import precision_recall_curve

from kensa.models.base import Detector, DetectorConfig, Postprocess
from kensa.models.data.robust import PoseCopies
from kensa.models.data.samples import Sample
from kensa.models.decision import ANOMALY_BAND, verdict_for
from kensa.models.imaging import resize_map, to_tensor
from kensa.models.tiling import TileConfig, TileGrid
from kensa.models.types import Detection, EvidenceLayer, Finding, Task, Verdict

log = logging.getLogger(__name__)
ANOMALY_LABEL = "anomaly"
THRESHOLD_SPAN = 1000.0


class AnomalyConfig(DetectorConfig):
    labels: list[str] = Field(default_factory=lambda: [ANOMALY_LABEL])
    input_size: tuple[int, int] = (256, 256)
    backbone: str = "efficientnet_lite0"
    blur_sigma: float = Field(4.0, description="Gaussian smoothing of maps, in input pixels")
    calibration_fraction: float = Field(0.2, description="good images held out to calibrate")
    calibration_quantile: float = Field(
        0.99, description="threshold = max(this quantile, mean + 3 sd) of held-out good scores"
    )
    pixel_quantile: float = Field(0.999, description="good-pixel quantile = pixel threshold")
    score_top_k: int = Field(1, ge=1, description="image score = mean of the k highest map "
                                                  "pixels (1 = the maximum)")
    native_resolution: bool = Field(
        False, description="score each photo at its own resolution in overlapping tiles "
        "(``tile``) instead of resizing it to input_size")
    tile: TileConfig = Field(default_factory=TileConfig,
                             description="tiles of the native-resolution mode")
    pose_copies: int = Field(
        0, ge=0, le=16, description="fit on each good image plus this many random pose "
        "copies (seed 001's rotation/shift/scale ranges, kensa.models.data.robust): parts "
        "that arrive turned or shifted stay good")
    seed: int = 0

    native_capable: ClassVar[bool] = False
    """Whether the detector implements ``native_resolution`` (a config class says so)."""

    @model_validator(mode="after")
    def _native_supported(self) -> AnomalyConfig:
        if self.native_resolution and not self.native_capable:
            raise ValueError(f"{type(self).__name__} does not implement native_resolution")
        return self


class AnomalyPostprocess(Postprocess):
    threshold: float | None = Field(None, description="raw image score at which a part is bad")
    pixel_threshold: float | None = Field(None, description="raw pixel score of a defect pixel")
    map_low: float = Field(0.0, description="typical good pixel score: the heatmap's zero")
    review_band: tuple[float, float] = Field(
        ANOMALY_BAND,
        description="score/threshold in [low, high) gives 'review', >= high 'defect' "
        "(kensa.models.decision): a score just past the good-only threshold may be a good "
        "outlier, so a person looks first",
    )
    min_area_fraction: float = Field(5e-4, description="smallest finding, as image fraction")
    threshold_method: str | None = Field(None, description="how the threshold was set")
    calibrated_threshold: float | None = Field(
        None, description="the threshold calibration set; a manual one stays within a factor "
                          "of THRESHOLD_SPAN of it (older artifacts: the saved threshold)")


class AnomalyDetector(Detector):
    """Base for detectors trained on good parts only."""

    Config = AnomalyConfig
    Post = AnomalyPostprocess
    config: AnomalyConfig
    post: AnomalyPostprocess

    # -- subclass contract ---------------------------------------------------------------------
    @abstractmethod
    def fit_good(self, images: Sequence[np.ndarray], **options: Any) -> dict[str, Any]:
        """Learn the good appearance from HxWx3 uint8 images."""

    @abstractmethod
    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Raw anomaly maps ``B x h x w`` for a normalised batch ``x``, at any resolution
        (e.g. one score per patch); the base upsamples them to the input size."""

    def update_good(self, images: Sequence[np.ndarray], **options: Any) -> dict[str, Any]:
        """Add good images to what was learnt, without a full refit (a memory bank grows,
        running statistics absorb them). Detectors that cannot do so raise
        ``NotImplementedError``."""
        raise NotImplementedError(f"{self.kind} does not learn incrementally; retrain it")

    def image_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """Image score from (smoothed) maps: the mean of the ``score_top_k`` highest pixels
        (the maximum by default)."""
        flat = maps.flatten(1)
        k = min(self.config.score_top_k, flat.shape[1])
        return flat.amax(dim=1) if k == 1 else flat.topk(k, dim=1).values.mean(dim=1)

    # -- native resolution ---------------------------------------------------------------------
    def native_tensor(self, image: np.ndarray) -> torch.Tensor:
        """One photo as a normalised ``1 x 3 x H x W`` tensor at its own size."""
        return to_tensor(image, tuple(image.shape[:2])).to(self.device)

    def native_grid(self, x: torch.Tensor) -> TileGrid:
        return TileGrid.for_image(int(x.shape[-2]), int(x.shape[-1]), self.config.tile)

    def _maps_at_input(self, chunk: list[np.ndarray]) -> torch.Tensor:
        """Raw maps at the pixels the detector scores: input size, or each photo's own size
        (native mode: one photo per call, as sizes differ)."""
        if self.config.native_resolution:
            x = self.native_tensor(chunk[0])
            m = self.score_maps(x).float()  # the padded photo's map at the feature stride
            return self.native_grid(x).crop(m[:, None])[:, 0]
        x = to_tensor(chunk, tuple(self.config.input_size)).to(self.device)
        m = self.score_maps(x).float()
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0]
        return m

    # -- scoring -------------------------------------------------------------------------------
    def _smooth(self, maps: torch.Tensor) -> torch.Tensor:
        sigma = self.config.blur_sigma
        if sigma <= 0:
            return maps
        radius = max(1, round(3 * sigma))
        grid = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
        kernel = torch.exp(-(grid**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        x = maps[:, None]
        x = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
        x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1))
        x = torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1))
        return x[:, 0]

    @torch.inference_mode()
    def raw_scores(self, images: Sequence[np.ndarray], batch_size: int = 8
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw image scores and smoothed maps at input size (native mode: at each photo's
        own size) for a list of images."""
        self.model.eval()
        scores, maps = [], []
        if self.config.native_resolution:
            batch_size = 1
        for start in range(0, len(images), batch_size):
            m = self._smooth(self._maps_at_input(list(images[start:start + batch_size])))
            scores.append(self.image_scores(m).cpu().numpy())
            maps.extend(m.cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0), maps

    # -- training and calibration ------------------------------------------------------------
    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None,
            **options: Any) -> dict[str, Any]:
        """Fit on the good samples of ``train``; calibrate on held-out good images and, when
        ``val`` holds labelled defects, at the F1 optimum."""
        good = [s for s in train if s.is_good]
        if len(good) < 2:
            raise ValueError(f"need at least 2 good images to fit, got {len(good)}")
        rng = np.random.default_rng(self.config.seed)
        order = rng.permutation(len(good))
        n_cal = max(1, round(len(good) * self.config.calibration_fraction))
        if val and any(s.is_good for s in val):
            fit_part, cal_part = good, [s for s in val if s.is_good]
        else:
            fit_part = [good[i] for i in order[n_cal:]]
            cal_part = [good[i] for i in order[:n_cal]]
        started = time.perf_counter()
        images = self.with_pose_copies([s.load_image() for s in fit_part])
        report = self.fit_good(images, **options)
        fit_seconds = time.perf_counter() - started
        defects = [s for s in (val or []) if not s.is_good]
        report.update(self.calibrate([s.load_image() for s in cal_part],
                                     [s.load_image() for s in defects]))
        report.update(fit_seconds=round(fit_seconds, 3), n_fit=len(fit_part),
                      n_calibration=len(cal_part), n_defect_val=len(defects),
                      n_pose_copies=len(images) - len(fit_part))
        self.metadata.training_data = {
            "n_good_fit": len(fit_part), "n_good_calibration": len(cal_part),
            "n_defect_calibration": len(defects), **self.metadata.training_data,
            "n_fit_samples": len(images),  # with pose copies: what the statistics counted
        }
        return report

    def fit_samples(self) -> int:
        """How many images (pose copies included) the learnt statistics count; older
        artifacts, fitted without copies, recorded only ``n_good_fit``."""
        data = self.metadata.training_data
        return int(data.get("n_fit_samples", data.get("n_good_fit", 0)))

    def with_pose_copies(self, images: list[np.ndarray]) -> Sequence[np.ndarray]:
        """``images`` followed by ``pose_copies`` seeded random pose copies of each, made as
        they are read (seed 001's augmentation for good-only detectors; calibration images
        are never copied)."""
        if not self.config.pose_copies:
            return images
        return PoseCopies(images, self.config.pose_copies, self.config.seed)

    def update(self, images: Sequence[np.ndarray], calibration: Sequence[np.ndarray] = (),
               defects: Sequence[np.ndarray] = ()) -> dict[str, Any]:
        """Learn newly confirmed good ``images`` incrementally (``update_good``), then
        recalibrate the threshold on ``calibration`` good images (and ``defects``) when given;
        without them the threshold stays (more good data only calms the scores)."""
        if not len(images):
            raise ValueError("no images to learn from")
        started = time.perf_counter()
        samples = self.with_pose_copies(list(images))
        report = self.update_good(samples)
        report["update_seconds"] = round(time.perf_counter() - started, 3)
        if len(calibration):
            report.update(self.calibrate(list(calibration), list(defects)))
        else:
            report.update(threshold=self.post.threshold, threshold_method=(
                f"{self.post.threshold_method} (kept)"))
        data = self.metadata.training_data
        data["n_fit_samples"] = self.fit_samples() + len(samples)
        data["n_good_fit"] = int(data.get("n_good_fit", 0)) + len(images)
        data["n_good_updates"] = int(data.get("n_good_updates", 0)) + len(images)
        report.update(n_update=len(images), n_calibration=len(calibration))
        return report

    def calibrate(self, good: Sequence[np.ndarray],
                  defects: Sequence[np.ndarray] = ()) -> dict[str, Any]:
        """Set thresholds: a quantile of held-out good scores, or the F1 optimum with defects."""
        good_scores, good_maps = self.raw_scores(good)
        pixels = np.concatenate([m.ravel() for m in good_maps])
        self.post.map_low = float(np.median(pixels))
        self.post.pixel_threshold = float(np.quantile(pixels, self.config.pixel_quantile))
        quantile = float(np.quantile(good_scores, self.config.calibration_quantile))
        spread = float(good_scores.mean() + 3 * good_scores.std())
        threshold = max(quantile, spread)
        method = (f"good-quantile-{self.config.calibration_quantile}" if quantile >= spread
                  else "good-mean+3sd")
        if len(defects):
            defect_scores, _ = self.raw_scores(defects)
            y = np.r_[np.zeros(len(good_scores)), np.ones(len(defect_scores))]
            s = np.r_[good_scores, defect_scores]
            precision, recall, thresholds = precision_recall_curve(y, s)
            f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
            if len(thresholds):
                cut = float(thresholds[int(np.argmax(f1[:-1]))])
                below = s[s < cut]  # not on the lowest defect itself: midway to the next score
                threshold = (cut + float(below.max())) / 2 if below.size else cut
                method = "f1-optimum"
        self.post.threshold = self.post.calibrated_threshold = max(threshold, 1e-12)
        self.post.threshold_method = method
        self.post.pixel_threshold = max(self.post.pixel_threshold, self.post.map_low + 1e-6)
        log.info("%s calibrated: threshold %.4g (%s), pixel threshold %.4g", self.name,
                 self.post.threshold, method, self.post.pixel_threshold)
        return {"threshold": self.post.threshold, "threshold_method": method,
                "pixel_threshold": self.post.pixel_threshold,
                "good_score_max": float(good_scores.max())}

    # -- run-time decisions ------------------------------------------------------------------
    def thresholds(self) -> dict[str, float]:
        return {} if self.post.threshold is None else {"image": self.post.threshold}

    def set_threshold(self, value: float, label: str | None = None) -> None:
        if label not in (None, "image"):
            raise ValueError(f"{self.kind} has one image threshold, not one for {label!r}")
        value = self.check_threshold(value)
        if self.post.calibrated_threshold is None:  # an older artifact: keep the range fixed
            self.post.calibrated_threshold = self.post.threshold
        self.post.threshold = value
        self.post.threshold_method = "manual"

    def threshold_range(self) -> tuple[float, float]:
        """Within a factor of THRESHOLD_SPAN of the calibrated threshold, both ways: a cut
        below every good score (all parts defect) or above any score the features can give
        (all parts ok) is never a threshold. Not calibrated yet: any positive score."""
        reference = self.post.calibrated_threshold or self.post.threshold
        if reference is None:
            return 0.0, math.inf
        return reference / THRESHOLD_SPAN, reference * THRESHOLD_SPAN

    def verdict_for(self, score: float) -> Verdict:
        if self.post.threshold is None:
            raise RuntimeError(f"{self.name} is not calibrated; fit it first")
        return verdict_for(score, self.post.threshold, self.post.review_band)

    def findings_from_map(self, full_map: np.ndarray, score: float,
                          verdict: Verdict) -> list[Finding]:
        """Connected regions above the pixel threshold whose peak reaches the review level,
        each cut to its half-maximum contour
        (smoothed maps spread a thin defect's evidence; the contour keeps its real extent).
        A region's score is its peak over the image threshold, so it reads like the image's
        normalised anomaly score."""
        if verdict == Verdict.OK:
            return []
        height, width = full_map.shape
        min_area = max(1, int(self.post.min_area_fraction * height * width))
        regions, _ = ndimage.label(full_map >= self.post.pixel_threshold)
        findings = []
        for index, box in enumerate(ndimage.find_objects(regions), start=1):
            if box is None:
                continue
            values = full_map[box]
            region = regions[box] == index
            peak = float(values[region].max())
            if peak < self.post.review_band[0] * self.post.threshold:
                continue  # a finding must cross the line itself, not just sit near one that did
            half_max = self.post.map_low + 0.5 * (peak - self.post.map_low)
            mask = region & (values >= max(self.post.pixel_threshold, half_max))
            area = int(mask.sum())
            if area < min_area:
                continue
            rows, cols = np.nonzero(mask)
            full_mask = np.zeros_like(full_map, dtype=bool)
            full_mask[box] = mask
            y0, x0 = box[0].start, box[1].start
            findings.append(Finding(
                label=ANOMALY_LABEL, score=peak / self.post.threshold, detector=self.name,
                area_px=area,
                bbox=(x0 + int(cols.min()), y0 + int(rows.min()),
                      x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1),
                mask=full_mask,
            ))
        findings.sort(key=lambda f: f.score, reverse=True)
        if not findings:  # the image score crossed the line but no region stands out
            findings.append(Finding(label=ANOMALY_LABEL, score=score / self.post.threshold,
                                    detector=self.name))
        return findings

    def predict(self, image: np.ndarray) -> Detection:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detection]:
        started = time.perf_counter()
        scores, maps = self.raw_scores(images)
        per_image_ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
        out = []
        for image, score, small_map in zip(images, scores, maps, strict=True):
            t0 = time.perf_counter()
            full_map = resize_map(small_map, image.shape[:2])
            verdict = self.verdict_for(float(score))
            findings = self.findings_from_map(full_map, float(score), verdict)
            out.append(Detection(
                detector=self.name, version=self.version, task=Task.ANOMALY, verdict=verdict,
                findings=findings, anomaly_score=float(score), threshold=self.post.threshold,
                evidence=[EvidenceLayer("heatmap", ANOMALY_LABEL, full_map,
                                        (self.post.map_low, self.post.pixel_threshold))],
                threshold_method=self.post.threshold_method,
                timings_ms={"model": per_image_ms,
                            "postprocess": (time.perf_counter() - t0) * 1000},
            ))
        return out
