"""The generator registry and how synthetic images are marked wherever they go.

A written image is named ``synthetic_<method>_<label>_<n>.png`` and has a sidecar
``.json`` (``{"synthetic": true, "method", "label", "seed", ...}``); its folder gets a
``SYNTHETIC.json`` manifest. Layouts mark such files ``meta["synthetic"]`` and keep them in
the training split (never scored on).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kensa.models.data.layouts import SYNTHETIC_PREFIX
from kensa.models.data.samples import Sample

MANIFEST = "SYNTHETIC.json"


@dataclass
class Synthesised:
    """One generated image (``H x W x 3`` uint8) and, when the method knows it, its mask."""

    image: np.ndarray
    mask: np.ndarray | None = None
    info: dict[str, Any] | None = None


class Generator(ABC):
    """Learns one label from its samples (and good samples, for methods that edit them)."""

    method: str = ""

    def __init__(self, *, size: int = 64, seed: int = 0, epochs: int = 50,
                 device: str = "cpu", **options: Any) -> None:
        self.size = size
        self.seed = seed
        self.epochs = epochs
        self.device = device
        self.options = options

    @abstractmethod
    def fit(self, label: str, samples: Sequence[Sample], good: Sequence[Sample]
            ) -> dict[str, Any]:
        """Train (or prepare) on the ``label`` samples; returns a small report."""

    @abstractmethod
    def generate(self, count: int) -> list[Synthesised]:
        """``count`` new images of the label at the generator's size."""


_GENERATORS: dict[str, tuple[type[Generator], str]] = {}


def register_generator(method: str, description: str
                       ) -> Callable[[type[Generator]], type[Generator]]:
    def wrap(cls: type[Generator]) -> type[Generator]:
        if method in _GENERATORS:
            raise ValueError(f"generator {method!r} is already registered")
        cls.method = method
        _GENERATORS[method] = (cls, description)
        return cls

    return wrap


def is_synthetic_name(name: str) -> bool:
    return Path(name).name.startswith(SYNTHETIC_PREFIX)


def write_synthetic(out: Path, label: str, method: str, items: Sequence[Synthesised],
                    size: tuple[int, int] | None, info: dict[str, Any]) -> list[Path]:
    """Write ``out/<label>/synthetic_<method>_<label>_<n>.png`` (+ ``_mask.png`` when known,
    + ``.json`` sidecar), resized to ``size`` (H, W) when given; update the manifest."""
    folder = out / label
    folder.mkdir(parents=True, exist_ok=True)
    start = len(list(folder.glob(f"{SYNTHETIC_PREFIX}{method}_*.png")))
    written = []
    for k, item in enumerate(items, start=start):
        stem = f"{SYNTHETIC_PREFIX}{method}_{label}_{k:05d}"
        image = Image.fromarray(item.image)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        path = folder / f"{stem}.png"
        image.save(path)
        meta = {"synthetic": True, "method": method, "label": label, **info,
                **(item.info or {})}
        if item.mask is not None:
            mask = Image.fromarray(item.mask.astype(np.uint8) * 255)
            mask = mask.resize(image.size, Image.Resampling.NEAREST)
            mask.save(folder / f"{stem}_mask.png")
            meta["mask"] = f"{stem}_mask.png"
        (folder / f"{stem}.json").write_text(json.dumps(meta, indent=1, default=str))
        written.append(path)
    manifest = out / MANIFEST
    entries = json.loads(manifest.read_text()) if manifest.is_file() else []
    entries.append({"label": label, "method": method, "count": len(written), **info})
    manifest.write_text(json.dumps(entries, indent=1, default=str))
    return written


def synthetic_samples(folder: Path) -> list[Sample]:
    """The synthetic images of a ``kensa synthesize`` output folder as training samples
    (``meta["synthetic"]``, split ``train``)."""
    samples = []
    for sidecar in sorted(Path(folder).glob(f"*/{SYNTHETIC_PREFIX}*.json")):
        meta = json.loads(sidecar.read_text())
        path = sidecar.with_suffix(".png")
        if not meta.get("synthetic") or not path.is_file():
            continue
        mask_loader = None
        if meta.get("mask"):
            mask_loader = _MaskFile(sidecar.parent / meta["mask"], meta["label"])
        samples.append(Sample(labels=(meta["label"],), path=path, split="train",
                              group=f"synthetic:{path.stem}", mask_loader=mask_loader,
                              meta={"synthetic": True, "method": meta.get("method")}))
    return samples


@dataclass
class _MaskFile:
    path: Path
    label: str

    def __call__(self, height: int, width: int) -> dict[str, np.ndarray]:
        mask = Image.open(self.path).convert("L")
        if mask.size != (width, height):
            mask = mask.resize((width, height), Image.Resampling.NEAREST)
        return {self.label: np.asarray(mask) > 127}


def to_uint8(x: Any) -> list[np.ndarray]:
    """``B x C x H x W`` tensor in [-1, 1] -> list of ``H x W x 3`` uint8."""
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return [np.ascontiguousarray(a) for a in arr]


def is_gray(images: Sequence[np.ndarray]) -> bool:
    """All images have equal R, G and B (NEU-DET is gray saved as 3-channel JPEG)."""
    return all(np.abs(im[..., 0].astype(int) - im[..., 2]).max() <= 2
               and np.abs(im[..., 0].astype(int) - im[..., 1]).max() <= 2 for im in images)


def training_tensor(samples: Sequence[Sample], size: int, gray: bool):
    """The samples resized to ``size`` x ``size`` as a ``N x C x H x W`` tensor in [-1, 1]."""
    import torch

    from kensa.models.data.augment import resize_image

    arrays = [resize_image(s.load_image(), (size, size)) for s in samples]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x[:, :1] if gray else x
