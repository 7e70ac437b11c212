"""The supervised training loop shared by the classifier and the segmenter.

Validation every epoch, early stopping on a validation metric, the best weights kept,
``checkpoint.pt`` (model, optimizer, scheduler, epoch, history) written after every epoch so a
run can be resumed, and loss/metric curves saved as a PNG.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm.auto import tqdm

from kensa.models.data.augment import resize_image, resize_mask
from kensa.models.data.recipes import build_recipe, get_recipe
from kensa.models.data.samples import Sample
from kensa.models.data.tiling import tile_samples
from kensa.models.imaging import to_tensor

log = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint.pt"
CURVES_FILE = "curves.png"
CACHE_BUDGET_BYTES = 1_500_000_000


class SampleDataset(Dataset):
    """Samples at input size as normalised tensors with a multi-hot label vector
    (``target="labels"``) or a C x H x W mask stack (``target="masks"``).

    Resized images (and masks) are cached in memory while they fit ``CACHE_BUDGET_BYTES``,
    so later epochs skip decoding; augmentation runs on the cached copies.
    """

    def __init__(self, samples: Sequence[Sample], labels: Sequence[str],
                 size: tuple[int, int], target: str = "labels", transform=None,
                 masks_for_transform: bool = False) -> None:
        if target not in {"labels", "masks"}:
            raise ValueError(f"target must be 'labels' or 'masks', not {target!r}")
        self.samples = list(samples)
        self.labels = list(labels)
        self.size = tuple(size)
        self.target = target
        self.transform = transform
        # a classifier whose augmentation reads masks (blackout, paste) loads them too, and
        # drops a label whose mask the augmentation removed entirely
        self.with_masks = target == "masks" or (masks_for_transform and transform is not None)
        per_item = size[0] * size[1] * (3 + (len(labels) if self.with_masks else 0))
        self.cache_enabled = per_item * len(self.samples) <= CACHE_BUDGET_BYTES
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def label_vector(self, index: int) -> np.ndarray:
        labels = set(self.samples[index].labels)
        return np.array([lab in labels for lab in self.labels], dtype=np.float32)

    def resized(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The image (H x W x 3 uint8) and mask stack (H x W x C bool) at input size."""
        if index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        image = sample.load_image()
        masks = None
        if self.with_masks:  # samples without masks get empty ones (good, label-only)
            height, width = image.shape[:2]
            by_label = sample.load_masks(height, width)
            masks = np.stack([resize_mask(by_label[lab], self.size) if lab in by_label
                              else np.zeros(self.size, dtype=bool) for lab in self.labels],
                             axis=-1)
        item = (resize_image(image, self.size), masks)
        if self.cache_enabled:
            self._cache[index] = item
        return item

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, masks = self.resized(index)
        before = masks
        if self.transform is not None:
            if masks is not None:
                out = self.transform(image=image, mask=masks.astype(np.uint8))
                image, masks = out["image"], out["mask"].astype(bool)
            else:
                image = self.transform(image=image)["image"]
        if not image.flags.writeable:
            image = image.copy()
        x = to_tensor(image, self.size)[0]
        if self.target == "masks":
            y = torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1))).float()
        else:
            vector = self.label_vector(index)
            if masks is not None:
                gone = before.reshape(-1, len(self.labels)).any(0) & \
                    ~masks.reshape(-1, len(self.labels)).any(0)
                vector[gone] = 0.0
            y = torch.from_numpy(vector)
        return x, y


def balanced_sampler(samples: Sequence[Sample], labels: Sequence[str],
                     seed: int = 0) -> WeightedRandomSampler:
    """Draw images so that every class (and 'good') is seen about equally often; an image
    with several labels takes the weight of its rarest one."""
    counts: dict[str, int] = {"__good__": 0, **{lab: 0 for lab in labels}}
    for s in samples:
        for key in (s.labels or ("__good__",)):
            if key in counts:
                counts[key] += 1
    weights = []
    for s in samples:
        keys = [k for k in (s.labels or ("__good__",)) if counts.get(k)]
        weights.append(max((1.0 / counts[k] for k in keys), default=0.0))
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.tensor(weights, dtype=torch.double),
                                 num_samples=len(samples), replacement=True,
                                 generator=generator)


def make_loader(dataset: SampleDataset, batch_size: int, *, shuffle: bool, workers: int = 0,
                sampler=None, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, generator=generator,
                      drop_last=False, persistent_workers=workers > 0)


def _signature(config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed (not epochs/patience/device)."""
    ignore = {"epochs", "patience", "name", "workers"}
    return {k: v for k, v in config.items() if k not in ignore}


def train_loop(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    *,
    monitor: str,
    epochs: int,
    lr: float,
    weight_decay: float = 1e-4,
    patience: int = 5,
    device: torch.device | str = "cpu",
    out_dir: Path | None = None,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    progress: bool = True,
    on_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` with AdamW + cosine schedule; keep the weights with the best
    ``validate()[monitor]`` (higher is better); stop after ``patience`` epochs without gain.
    ``on_epoch(n)`` is called after epoch ``n`` (1-based; a job's progress; it may raise to
    stop).

    Returns ``history`` (one dict per epoch), ``best_epoch``, ``best_score``, ``epochs_run``,
    ``stopped_early`` and ``seconds``. The model ends with the best weights loaded.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    history: list[dict[str, float]] = []
    best_score, best_epoch, bad_epochs, start_epoch = -np.inf, -1, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    ckpt_path = out_dir / CHECKPOINT_FILE if out_dir else None
    signature = _signature(config or {})
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT_FILE} in {out_dir}")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("signature") != signature:
            raise ValueError(f"{ckpt_path} was written for a different configuration: "
                             f"{state.get('signature')} vs {signature}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_state = state["history"], state["best_state"]
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        bad_epochs, start_epoch = state["bad_epochs"], state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at epoch %d (best %s=%.4f at epoch %d)", ckpt_path,
                 start_epoch + 1, monitor, best_score, best_epoch + 1)
    started = time.perf_counter()
    stopped_early = bad_epochs >= patience
    for epoch in range(start_epoch, epochs):
        if stopped_early:
            break
        model.train()
        total, seen = 0.0, 0
        t0 = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not progress,
                   unit="batch")
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        epoch_lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_seconds = time.perf_counter() - t0
        model.eval()
        metrics = validate()
        row = {"epoch": epoch + 1, "train_loss": total / max(1, seen),
               "lr": epoch_lr,
               "train_images_per_s": seen / max(train_seconds, 1e-9), **metrics}
        history.append(row)
        score = metrics[monitor]
        if score > best_score:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= patience
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                          if k not in {"epoch", "lr", "train_images_per_s"})
        msg = f"epoch {epoch + 1}/{epochs}: {shown} ({row['train_images_per_s']:.1f} img/s)"
        if progress:
            tqdm.write(msg)
        log.info(msg)
        if ckpt_path is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "history": history, "best_state": best_state, "best_score": best_score,
                        "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                        "torch_rng": torch.get_rng_state(), "signature": signature}, tmp)
            tmp.replace(ckpt_path)
            save_curves(history, out_dir / CURVES_FILE, monitor)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_epoch": best_epoch + 1, "best_score": float(best_score),
            "monitor": monitor, "epochs_run": len(history), "stopped_early": stopped_early,
            "seconds": round(time.perf_counter() - started, 2)}


def save_curves(history: Sequence[dict[str, float]], path: Path, monitor: str) -> Path | None:
    """Loss curves (left) and the monitored validation metric (right) per epoch."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            ax_loss.plot(epochs, [row[key] for row in history], marker="o", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key in history[0]:
        if key.startswith("val_") and key != "val_loss":
            ax_metric.plot(epochs, [row[key] for row in history], marker="o", label=key)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title(f"validation (early stopping on {monitor})")
    ax_metric.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def hold_out_validation(train: Sequence[Sample], val: Sequence[Sample] | None,
                        fraction: float = 0.2, seed: int = 0
                        ) -> tuple[list[Sample], list[Sample]]:
    """``(train, val)``; without a validation set, hold out ``fraction`` of ``train`` (by
    group when samples carry one, so twins stay together). A set too small to split
    validates on itself."""
    train = list(train)
    if val:
        return train, list(val)
    groups = sorted({s.group or f"#{i}" for i, s in enumerate(train)})
    if len(groups) < 5:
        log.warning("only %d training groups: validating on the training set", len(groups))
        return train, train
    rng = np.random.default_rng(seed)
    n_val = max(1, round(len(groups) * fraction))
    held = set(rng.permutation(groups)[:n_val].tolist())
    keys = [s.group or f"#{i}" for i, s in enumerate(train)]
    return ([s for s, k in zip(train, keys, strict=True) if k not in held],
            [s for s, k in zip(train, keys, strict=True) if k in held])


class TrainingData(NamedTuple):
    """What a supervised ``fit`` trains and validates on."""

    train: list[Sample]
    val: list[Sample]
    train_ds: SampleDataset
    val_ds: SampleDataset
    loader: DataLoader


def prepare_training_data(cfg: Any, train: Sequence[Sample], val: Sequence[Sample] | None,
                          target: str, balanced: bool) -> TrainingData:
    """Hold out validation if needed, build the augmented training set and its loader from a
    detector config (seed, input_size, labels, flips/rotate/photometric, batch_size, workers);
    ``target`` is ``"labels"`` or ``"masks"``; ``balanced`` samples classes evenly."""

    torch.manual_seed(cfg.seed)
    train, val = hold_out_validation(train, val, seed=cfg.seed)
    if getattr(cfg, "tiles", 0):
        train = tile_samples(train, cfg.tiles, cfg.dark_tile)
        val = tile_samples(val, cfg.tiles, cfg.dark_tile)
    size = tuple(cfg.input_size)
    recipe = getattr(cfg, "augment", "default")
    transform = build_recipe(recipe, hflip=cfg.hflip, vflip=cfg.vflip, rotate=cfg.rotate,
                             photometric=cfg.photometric, seed=cfg.seed)
    train_ds = SampleDataset(train, cfg.labels, size, target, transform,
                             masks_for_transform=get_recipe(recipe).needs_masks)
    val_ds = SampleDataset(val, cfg.labels, size, target)
    sampler = balanced_sampler(train, cfg.labels, cfg.seed) if balanced else None
    loader = make_loader(train_ds, cfg.batch_size, shuffle=True, workers=cfg.workers,
                         sampler=sampler, seed=cfg.seed)
    return TrainingData(train, val, train_ds, val_ds, loader)
