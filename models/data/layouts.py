"""Dataset layouts on disk -> a :class:`Dataset` of lazy :class:`Sample` s with splits.

Layouts (``detect_layout`` picks one, or name it):

``folders``   ``root/<label>/*.{jpg,png,bmp,tif}``; a label named ok/good/free/normal (any
              case) is defect-free; optional ``root/{train,val,test}/<label>/``.
``masks``     ``root/[split/]images/x.*`` + ``root/[split/]masks/x.png`` (or ``x_mask.png``);
              binary 0/255 (label "defect") or class-indexed with ``classes.txt``. An image
              without a mask file is good.
``mmseg``     ``root/img_dir/<split>/x.jpg`` + ``root/ann_dir/<split>/x.png``, class-indexed
              with ``class_names.txt`` (NEU-Seg).
``severstal`` ``root/train.csv`` (ImageId,ClassId,EncodedPixels - or the older
              ImageId_ClassId,EncodedPixels) + ``root/train_images/``; class ids 1-4 are
              pitted_surface, crazing, scratches, patches; images without rows are good.
``mvtec``     ``root/train/good``, ``root/test/<type>/``, ``root/ground_truth/<type>/x_mask.png``.
``neu``       class = file-name prefix (``crazing_12.jpg``), images in ``root`` or
              ``root/IMAGES``; Pascal VOC boxes in ``ANNOTATIONS/`` become box masks (a box
              of another class adds that label). ``Validation_Images/`` (+
              ``Validation_Annotations/``) is kept apart as split ``"validation_images"``.
``yolo``      ``root/images/[split/]x.jpg`` + ``root/labels/[split/]x.txt``: YOLO
              segmentation polygons (or boxes), normalised; empty or missing file = good;
              names from ``classes.txt`` or ``data.yaml`` ``names``, else ``{0: "defect"}``.

Class-name files list one name per line in index order; when the first line is a background
name (background, _background_, bg) it is index 0, otherwise the first line is index 1.

Splits: a layout's own split folders are kept (train/training, val/valid/validation,
test/testing are normalised). Samples the layout leaves unassigned get a seeded split,
stratified by their first label ("good" when none) and grouped by ``Sample.group`` so a group
never straddles splits. When every sample came with a split, a missing ``val`` or ``test`` is
carved out of ``train`` the same way (``val_fraction=0`` / ``test_fraction=0`` to skip). NEU's
``validation_images`` is never merged into train/val/test. ``dedupe=True`` first groups
rotated/flipped near-duplicates (:func:`dedupe_groups`) and, if the layout's splits put one
group in two splits, re-splits the whole dataset by group.

Loading is lazy: samples hold paths and small picklable mask loaders; only the masks layouts
read their (small) mask files once, to learn which labels each image carries.
"""

from __future__ import annotations

import csv
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from scipy.ndimage import uniform_filter
from tqdm import tqdm

from kensa.models.data.rle import rle_decode
from kensa.models.data.samples import Sample
from kensa.models.imaging import IMAGE_SUFFIXES, decode_image

GOOD_LABELS = frozenset({"ok", "good", "free", "normal", "defect_free", "defect-free"})
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
NEU_VALIDATION_SPLIT = "validation_images"
BACKGROUND_NAMES = frozenset({"background", "_background_", "__background__", "bg"})
CLASS_FILES = ("classes.txt", "class_names.txt")
SEVERSTAL_CLASSES = {1: "pitted_surface", 2: "crazing", 3: "scratches", 4: "patches"}
BINARY_LABEL = "defect"


# --------------------------------------------------------------------------- registry
_LOADERS: dict[str, Callable[[Path], _Parsed]] = {}


def register_layout(name: str) -> Callable[[Callable[[Path], _Parsed]], Callable[[Path], _Parsed]]:
    """Register a loader that parses a dataset folder of layout ``name``; the CLI's ``--layout``
    choices and ``load_dataset`` come from here. (``detect_layout`` knows how to recognise the
    built-in ones; a new layout is chosen explicitly.)"""

    def decorate(loader: Callable[[Path], _Parsed]) -> Callable[[Path], _Parsed]:
        if name in _LOADERS and _LOADERS[name] is not loader:
            raise ValueError(f"layout {name!r} is already registered")
        _LOADERS[name] = loader
        return loader

    return decorate


def list_layouts() -> tuple[str, ...]:
    """Every registered dataset layout, sorted."""
    return tuple(sorted(_LOADERS))


# --------------------------------------------------------------------------- dataset


@dataclass
class Dataset:
    """Samples of one dataset with their labels, splits and (lazy) masks."""

    root: Path
    layout: str
    classes: tuple[str, ...]
    samples: list[Sample]
    mask_kind: str | None = None  # "pixels", "boxes" or None (labels only)
    split_source: str = "layout"
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        """The samples of one split ("train", "val", "test" or a layout-specific name)."""
        return [s for s in self.samples if s.split == name]

    @property
    def splits(self) -> tuple[str, ...]:
        present = {s.split for s in self.samples}
        return tuple(n for n in SPLITS if n in present) + tuple(
            sorted(n for n in present if n not in SPLITS and n is not None))

    def resplit(self, seed: int = 0, val_fraction: float = 0.15,
                test_fraction: float = 0.15) -> None:
        """Ignore the layout's splits (except NEU's ``validation_images``) and split every
        sample again, seeded, stratified and by group."""
        pool = [s for s in self.samples if s.split != NEU_VALIDATION_SPLIT]
        split_by_group(pool, seed, val_fraction, test_fraction)
        self.split_source = "seeded by group"

    def group_leaks(self) -> int:
        """How many groups have samples in more than one split (0 = no leak)."""
        seen: dict[str, set[str | None]] = {}
        for s in self.samples:
            if s.group is not None:
                seen.setdefault(s.group, set()).add(s.split)
        return sum(len(v) > 1 for v in seen.values())

    def summary(self) -> dict:
        """JSON-able description for artifact metadata and reports."""
        splits = {}
        for name in self.splits:
            part = self.split(name)
            counts = Counter(label for s in part for label in s.labels)
            splits[name] = {
                "total": len(part),
                "good": sum(s.is_good for s in part),
                "defective": sum(not s.is_good for s in part),
                "labels": {c: counts.get(c, 0) for c in self.classes},
            }
        return {
            "layout": self.layout,
            "root": str(self.root),
            "classes": list(self.classes),
            "mask_kind": self.mask_kind,
            "n_samples": len(self.samples),
            "n_groups": len({s.group for s in self.samples}),
            "n_synthetic": sum(bool(s.meta.get("synthetic")) for s in self.samples),
            "split_source": self.split_source,
            "splits": splits,
            "notes": list(self.notes),
        }


@dataclass
class _Parsed:
    samples: list[Sample]
    classes: tuple[str, ...]  # declared order; unused ones are dropped later
    mask_kind: str | None = None
    notes: list[str] = field(default_factory=list)


def load_dataset(root: str | Path, layout: str = "auto", seed: int = 0,
                 val_fraction: float = 0.15, test_fraction: float = 0.15, *,
                 dedupe: bool = False) -> Dataset:
    """Parse ``root`` in the given (or detected) layout and assign train/val/test splits."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    name = detect_layout(root) if layout == "auto" else layout
    if name not in _LOADERS:
        raise ValueError(f"unknown layout {name!r}; choose one of {list_layouts()} or 'auto'")
    parsed = _LOADERS[name](root)
    if not parsed.samples:
        raise ValueError(f"no images found in {root} (layout {name})")
    present = {label for s in parsed.samples for label in s.labels}
    classes = tuple(c for c in parsed.classes if c in present)
    classes += tuple(sorted(present - set(classes)))
    ds = Dataset(root=root, layout=name, classes=classes, samples=parsed.samples,
                 mask_kind=parsed.mask_kind, notes=list(parsed.notes))
    if dedupe:
        n_groups = dedupe_groups(ds.samples)
        ds.notes.append(f"dedupe: {n_groups} groups of rotated/flipped near-duplicates "
                        f"among {len(ds.samples)} images")
        if ds.group_leaks():
            ds.notes.append(f"the layout's splits leaked {ds.group_leaks()} groups; "
                            "re-split by group")
            ds.resplit(seed, val_fraction, test_fraction)
            return ds
    ds.split_source = _assign_splits(ds.samples, seed, val_fraction, test_fraction)
    _keep_synthetic_in_train(ds)
    return ds


SYNTHETIC_PREFIX = "synthetic_"
"""File-name prefix of images written by ``kensa synthesize`` (kensa.models.synthesis)."""


def _keep_synthetic_in_train(ds: Dataset) -> None:
    """Synthetic images found in a layout are marked and never held out (a held-out figure
    on generated images would say nothing about real ones)."""
    marked = 0
    for sample in ds.samples:
        if sample.name.startswith(SYNTHETIC_PREFIX):
            sample.meta["synthetic"] = True
            sample.split = "train"
            marked += 1
    if marked:
        ds.notes.append(f"{marked} synthetic images (kept in train)")


def _assign_splits(samples: list[Sample], seed: int, val_fraction: float,
                   test_fraction: float) -> str:
    unassigned = [s for s in samples if s.split is None]
    if unassigned:
        split_by_group(unassigned, seed, val_fraction, test_fraction)
        return "seeded" if len(unassigned) == len(samples) else "layout+seeded"
    present = {s.split for s in samples}
    fractions = {name: frac for name, frac in (("test", test_fraction), ("val", val_fraction))
                 if name not in present and frac > 0}
    train = [s for s in samples if s.split == "train"]
    if not fractions or not train:
        return "layout"
    _split_pool(train, fractions, seed)
    return "layout+carved " + "+".join(sorted(fractions))


# --------------------------------------------------------------------------- splitting


def split_by_group(samples: list[Sample], seed: int = 0, val_fraction: float = 0.15,
                   test_fraction: float = 0.15) -> None:
    """Assign ``split`` in place: seeded, stratified by first label, groups kept together."""
    for s in samples:
        s.split = None
    _split_pool(samples, {"test": test_fraction, "val": val_fraction}, seed)


def _stratum(samples: list[Sample]) -> str:
    keys = Counter(s.labels[0] if s.labels else "good" for s in samples)
    return keys.most_common(1)[0][0]


def _split_pool(pool: list[Sample], fractions: dict[str, float], seed: int) -> None:
    """Move ``fraction`` of the pool's groups to each named split; the rest is "train"."""
    groups: dict[str, list[Sample]] = {}
    for i, s in enumerate(pool):
        groups.setdefault(s.group if s.group is not None else f"\0{i}", []).append(s)
    keys = list(groups)
    strata = [_stratum(groups[k]) for k in keys]
    total = len(keys)
    remaining = list(range(total))
    for name, frac in fractions.items():
        n = round(frac * total)
        n = min(n, len(remaining) - 1)
        if n <= 0:
            continue
        taken = _stratified_take(remaining, [strata[i] for i in remaining], n, seed)
        for i in taken:
            for s in groups[keys[i]]:
                s.split = name
        taken_set = set(taken)
        remaining = [i for i in remaining if i not in taken_set]
    for i in remaining:
        for s in groups[keys[i]]:
            s.split = "train"


def _stratified_take(items: list[int], strata: list[str], n: int, seed: int) -> list[int]:
    """``n`` of ``items`` drawn with sklearn's stratified shuffle; rare strata are pooled."""
    from sklearn.model_selection import train_test_split

    counts = Counter(strata)
    pooled = [k if counts[k] >= 2 else "\0rare" for k in strata]
    for stratify in (strata, pooled, None):
        try:
            _, taken = train_test_split(items, test_size=n, random_state=seed,
                                        stratify=stratify)
            return list(taken)
        except ValueError:
            continue
    raise AssertionError("unreachable: unstratified split cannot fail")


# --------------------------------------------------------------------------- near-duplicates


def dedupe_groups(samples: list[Sample], threshold: float = 0.97, detail: float = 0.75,
                  progress: bool = True) -> int:
    """Give images that are rotations/flips of each other the same ``group``.

    Every image is compared under the 8 dihedral transforms (rotations by 90 degrees, flips)
    with the others, in three steps: 8x8 thumbnails propose candidates; 32x32 thumbnails
    with their brightness plane removed must correlate above ``threshold``; and the fine
    texture (64x64 minus a 5x5 local mean) must correlate above ``detail`` - that last test
    stops different images with the same dominant feature (one bright scratch) from
    matching. On NEU-Seg true twins score > 0.98 / > 0.8 and look-alikes < 0.96 / < 0.72.
    Twins are joined transitively; a group is named after its first member's group (or
    file stem). Returns the number of groups.
    """
    n = len(samples)
    if n == 0:
        return 0
    thumbs = np.stack([_thumbnail(s, 64) for s in tqdm(
        samples, desc="dedupe thumbnails", unit="img", disable=not progress or n < 200)])
    mid = thumbs.reshape(n, 32, 2, 32, 2).mean(axis=(2, 4))
    small = mid.reshape(n, 8, 4, 8, 4).mean(axis=(2, 4))
    texture = thumbs - uniform_filter(thumbs, size=(1, 5, 5), mode="reflect")
    coarse = _flatten_unit(np.stack(_dihedral(small, axes=(1, 2)), axis=1))  # (n, 8, 64)
    mid_base = _flatten_unit(mid)  # (n, 1024)
    texture_base = _unit(texture.reshape(n, -1))  # (n, 4096)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def best_match(images: np.ndarray, others: np.ndarray, flatten) -> np.ndarray:
        variants = flatten(np.stack(_dihedral(images, axes=(1, 2)), axis=1))
        return np.einsum("ptd,pd->pt", variants, others).max(axis=1)

    chunk = 256
    for start in range(0, n, chunk):
        block = coarse[start:start + chunk]
        sims = (block.reshape(-1, 64) @ coarse[:, 0].T).reshape(len(block), 8, n).max(axis=1)
        rows, cols = np.nonzero(sims > threshold - 0.25)
        rows = rows + start
        keep = rows < cols  # each unordered pair once
        rows, cols = rows[keep], cols[keep]
        for p0 in range(0, rows.size, 512):
            r, c = rows[p0:p0 + 512], cols[p0:p0 + 512]
            ok = best_match(mid[r], mid_base[c], _flatten_unit) > threshold
            r, c = r[ok], c[ok]
            if r.size == 0:
                continue
            ok = best_match(texture[r], texture_base[c], _unit) > detail
            for i, j in zip(r[ok], c[ok], strict=True):
                ra, rb = find(int(i)), find(int(j))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    names: dict[int, str] = {}
    for i, s in enumerate(samples):
        root = find(i)
        names.setdefault(root, _sample_key(samples[root]))
        s.group = names[root]
    return len(names)


def _unit(v: np.ndarray) -> np.ndarray:
    """Flatten the last two axes (if 2-D images), remove the mean, scale to unit norm."""
    if v.ndim >= 3 and v.shape[-1] == v.shape[-2]:
        v = v.reshape(*v.shape[:-2], -1)
    v = v - v.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, v / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def _flatten_unit(stack: np.ndarray) -> np.ndarray:
    """(..., h, w) thumbnails -> (..., h*w) unit vectors with the least-squares brightness
    plane a + b x + c y removed (1, x, y are orthogonal on a centred grid)."""
    h, w = stack.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    v = stack.reshape(*stack.shape[:-2], h * w).astype(np.float32)
    v = v - v.mean(axis=-1, keepdims=True)
    for axis in (xx.ravel() - xx.mean(), yy.ravel() - yy.mean()):
        v = v - (v @ axis)[..., None] * (axis / (axis @ axis))
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, v / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def _sample_key(sample: Sample) -> str:
    if sample.path is not None:
        return sample.group or sample.path.stem
    return sample.group or sample.name


def _thumbnail(sample: Sample, size: int) -> np.ndarray:
    if sample.path is not None:
        rgb = decode_image(sample.path, min_side=1).rgb  # upright, any bit depth
    else:
        rgb = sample.load_image()
    gray = Image.fromarray(rgb).convert("L").resize((size, size), Image.Resampling.BOX)
    return np.asarray(gray, np.float32)


def _dihedral(a: np.ndarray, axes: tuple[int, int] = (0, 1)) -> list[np.ndarray]:
    """The 8 rotations/flips of square image(s) over ``axes``."""
    rotations = [np.rot90(a, k, axes=axes) for k in range(4)]
    return rotations + [np.flip(r, axis=axes[1]) for r in rotations]


# --------------------------------------------------------------------------- mask loaders


def _read_mask_array(path: Path, height: int, width: int) -> np.ndarray:
    """Mask values as stored (never scaled like photos); ``height``/``width`` are the upright
    photo's. A mask file carrying its own EXIF orientation is turned upright like a photo."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode not in ("L", "P", "1", "I", "I;16"):
            im = im.convert("L")
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling.NEAREST)
        arr = np.asarray(im)
    return arr[..., 0] if arr.ndim == 3 else arr


@dataclass(frozen=True)
class IndexMaskLoader:
    """Class-indexed (``values`` -> labels) or binary (``binary_label``) mask PNG."""

    path: Path
    values: tuple[tuple[int, str], ...] = ()
    binary_label: str | None = None

    def __call__(self, height: int, width: int) -> dict[str, np.ndarray]:
        arr = _read_mask_array(self.path, height, width)
        if self.binary_label is not None:
            mask = arr > (127 if arr.max() > 1 else 0)
            return {self.binary_label: mask} if mask.any() else {}
        out = {}
        for value, label in self.values:
            mask = arr == value
            if mask.any():
                out[label] = out[label] | mask if label in out else mask
        return out


@dataclass(frozen=True)
class EmptyMaskLoader:
    """A good image in a layout that has masks: no defect pixels."""

    def __call__(self, height: int, width: int) -> dict[str, np.ndarray]:
        return {}


@dataclass(frozen=True)
class RleMaskLoader:
    """Kaggle RLE strings per label (Severstal)."""

    runs: tuple[tuple[str, str], ...]

    def __call__(self, height: int, width: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for label, rle in self.runs:
            mask = rle_decode(rle, (height, width))
            out[label] = out[label] | mask if label in out else mask
        return {k: v for k, v in out.items() if v.any()}


@dataclass(frozen=True)
class BoxMaskLoader:
    """Pascal VOC boxes (pixel corners in an image of ``size`` = (w, h)) as filled masks."""

    boxes: tuple[tuple[str, float, float, float, float], ...]
    size: tuple[int, int] | None = None

    def __call__(self, height: int, width: int) -> dict[str, np.ndarray]:
        sx = width / self.size[0] if self.size else 1.0
        sy = height / self.size[1] if self.size else 1.0
        out: dict[str, np.ndarray] = {}
        for label, x0, y0, x1, y1 in self.boxes:
            mask = out.setdefault(label, np.zeros((height, width), bool))
            c0, c1 = int(np.floor((x0 - 1) * sx)), int(np.ceil(x1 * sx))
            r0, r1 = int(np.floor((y0 - 1) * sy)), int(np.ceil(y1 * sy))
            mask[max(r0, 0):min(r1, height), max(c0, 0):min(c1, width)] = True
        return {k: v for k, v in out.items() if v.any()}


@dataclass(frozen=True)
class YoloMaskLoader:
    """YOLO label file: ``cls x1 y1 x2 y2 ...`` polygons or ``cls cx cy w h`` boxes."""

    path: Path
    names: tuple[tuple[int, str], ...]

    def __call__(self, height: int, width: int) -> dict[str, np.ndarray]:
        names = dict(self.names)
        canvases: dict[str, Image.Image] = {}
        for cls, coords in _read_yolo(self.path):
            label = names.get(cls, f"class_{cls}")
            canvas = canvases.setdefault(label, Image.new("L", (width, height), 0))
            draw = ImageDraw.Draw(canvas)
            if len(coords) == 4:
                cx, cy, bw, bh = coords
                draw.rectangle([(cx - bw / 2) * width, (cy - bh / 2) * height,
                                (cx + bw / 2) * width - 1, (cy + bh / 2) * height - 1],
                               fill=1)
            elif len(coords) >= 6:
                points = [(coords[k] * width, coords[k + 1] * height)
                          for k in range(0, len(coords) - 1, 2)]
                draw.polygon(points, fill=1, outline=1)
        out = {k: np.asarray(v, bool) for k, v in canvases.items()}
        return {k: v for k, v in out.items() if v.any()}


def _read_yolo(path: Path) -> list[tuple[int, list[float]]]:
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5:
            rows.append((int(float(parts[0])), [float(v) for v in parts[1:]]))
    return rows


# --------------------------------------------------------------------------- file helpers


def _child(root: Path, name: str) -> Path | None:
    """Case-insensitive child lookup (``IMAGES`` vs ``images``)."""
    exact = root / name
    if exact.exists():
        return exact
    lowered = name.lower()
    try:
        for entry in os.scandir(root):
            if entry.name.lower() == lowered:
                return Path(entry.path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted), without stat-ing each one."""
    if not folder.is_dir():
        return []
    if not recursive:
        return sorted(Path(e.path) for e in os.scandir(folder)
                      if _is_image_name(e.name) and e.is_file())
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if _is_image_name(f)]
    return sorted(found)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder)
                  if e.is_dir() and not e.name.startswith("."))


def _split_name(name: str) -> str:
    return SPLIT_ALIASES.get(name.lower(), name.lower())


def _group_key(root: Path, path: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def read_class_names(path: Path) -> dict[int, str]:
    """Class-name file -> {mask value: name} (background line, if first, is dropped)."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if lines and lines[0].lower() in BACKGROUND_NAMES:
        return {i: name for i, name in enumerate(lines) if i > 0}
    return {i + 1: name for i, name in enumerate(lines)}


def _class_file(*folders: Path) -> Path | None:
    for folder in folders:
        for name in CLASS_FILES:
            found = _child(folder, name)
            if found is not None and found.is_file():
                return found
    return None


# --------------------------------------------------------------------------- layouts


@register_layout("folders")
def _load_folders(root: Path) -> _Parsed:
    split_dirs = [d for d in _subdirs(root) if d.name.lower() in SPLIT_ALIASES]
    parts = [(d, _split_name(d.name)) for d in split_dirs] or [(root, None)]
    samples, labels = [], set()
    for base, split in parts:
        for label_dir in _subdirs(base):
            good = label_dir.name.lower() in GOOD_LABELS
            if not good:
                labels.add(label_dir.name)
            for path in _images_in(label_dir, recursive=True):
                samples.append(Sample(labels=() if good else (label_dir.name,), path=path,
                                      split=split, group=_group_key(root, path)))
    return _Parsed(samples, tuple(sorted(labels)))


def _mask_index(folder: Path) -> dict[str, Path]:
    """Mask files by image key (relative path without suffix and ``_mask``)."""
    index = {}
    for path in _images_in(folder, recursive=True):
        key = path.relative_to(folder).with_suffix("").as_posix()
        index.setdefault(key.removesuffix("_mask"), path)
        index[key] = path
    return index


def _mask_histogram(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im if im.mode in ("L", "P", "1") else im.convert("L"))
    if arr.ndim == 3:
        arr = arr[..., 0]
    return np.bincount(arr.ravel().astype(np.int64), minlength=256)


def _paired_mask_samples(root: Path, pairs: Iterable[tuple[Path, Path, str | None]],
                         class_file: Path | None) -> _Parsed:
    """Samples from (images dir, masks dir, split) pairs; labels read from the masks."""
    rows: list[tuple[Path, Path | None, str | None]] = []
    for images_dir, masks_dir, split in pairs:
        index = _mask_index(masks_dir)
        for path in _images_in(images_dir, recursive=True):
            key = path.relative_to(images_dir).with_suffix("").as_posix()
            rows.append((path, index.get(key), split))
    mask_paths = [m for _, m, _ in rows if m is not None]
    with ThreadPoolExecutor(max_workers=4) as pool:
        hists = dict(zip(mask_paths, tqdm(
            pool.map(_mask_histogram, mask_paths), total=len(mask_paths),
            desc="reading masks", unit="mask", disable=len(mask_paths) < 500), strict=True))
    names = read_class_names(class_file) if class_file else None
    seen = np.zeros(256, np.int64)
    for h in hists.values():
        seen += h > 0
    values = [v for v in range(1, 256) if seen[v]]
    binary = names is None and set(values) <= {1, 255}
    binary_label = BINARY_LABEL
    if names is not None and len(names) == 1 and values and set(values) <= {255}:
        binary, binary_label = True, next(iter(names.values()))  # 0/255 masks, one class
    if names is None and not binary:
        names = {v: f"class_{v}" for v in values}
    notes = []
    samples = []
    for path, mask_path, split in rows:
        group = _group_key(root, path)
        if mask_path is None:
            samples.append(Sample(labels=(), path=path, split=split, group=group,
                                  mask_loader=EmptyMaskLoader()))
            continue
        hist = hists[mask_path]
        if binary:
            labels = (binary_label,) if hist[1:].any() else ()
            loader = IndexMaskLoader(mask_path, binary_label=binary_label)
        else:
            present = [v for v in range(1, 256) if hist[v]]
            unknown = [v for v in present if v not in names]
            if unknown:
                notes.append(f"{mask_path.name}: mask values {unknown} not in the class list")
            labels = tuple(dict.fromkeys(names.get(v, f"class_{v}") for v in present))
            loader = IndexMaskLoader(mask_path, values=tuple(
                (v, names.get(v, f"class_{v}")) for v in present))
        samples.append(Sample(labels=labels, path=path, split=split, group=group,
                              mask_loader=loader))
    classes = (binary_label,) if binary else tuple(dict.fromkeys(names.values()))
    return _Parsed(samples, classes, "pixels", notes[:20])


def _masks_pairs(root: Path) -> list[tuple[Path, Path, str | None]]:
    pairs = []
    images, masks = _child(root, "images"), _child(root, "masks")
    if images and masks and images.is_dir():
        pairs.append((images, masks, None))
    for d in _subdirs(root):
        if d.name.lower() in SPLIT_ALIASES:
            images, masks = _child(d, "images"), _child(d, "masks")
            if images and masks and images.is_dir():
                pairs.append((images, masks, _split_name(d.name)))
    return pairs


@register_layout("masks")
def _load_masks(root: Path) -> _Parsed:
    pairs = _masks_pairs(root)
    if not pairs:
        raise ValueError(f"{root}: expected images/ and masks/ (optionally under split folders)")
    return _paired_mask_samples(root, pairs, _class_file(root))


@register_layout("mmseg")
def _load_mmseg(root: Path) -> _Parsed:
    img_dir, ann_dir = _child(root, "img_dir"), _child(root, "ann_dir")
    if not (img_dir and ann_dir):
        raise ValueError(f"{root}: expected img_dir/ and ann_dir/")
    split_dirs = [d for d in _subdirs(img_dir) if _images_in(d)]
    pairs = [(d, ann_dir / d.name, _split_name(d.name)) for d in split_dirs]
    if _images_in(img_dir):
        pairs.append((img_dir, ann_dir, None))
    return _paired_mask_samples(root, pairs, _class_file(root, ann_dir))


@register_layout("severstal")
def _load_severstal(root: Path) -> _Parsed:
    csv_path = _child(root, "train.csv")
    images_dir = _child(root, "train_images")
    if csv_path is None or images_dir is None:
        raise ValueError(f"{root}: expected train.csv and train_images/")
    runs: dict[str, list[tuple[str, str]]] = {}
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if "ImageId_ClassId" in row:
                image_id, _, cls = row["ImageId_ClassId"].rpartition("_")
            else:
                image_id, cls = row["ImageId"], row["ClassId"]
            rle = (row.get("EncodedPixels") or "").strip()
            if rle:
                label = SEVERSTAL_CLASSES.get(int(cls), f"class_{cls}")
                runs.setdefault(image_id, []).append((label, rle))
    order = {name: i for i, name in enumerate(SEVERSTAL_CLASSES.values())}
    samples = []
    for path in _images_in(images_dir):
        image_runs = tuple(sorted(runs.get(path.name, []), key=lambda r: order.get(r[0], 99)))
        labels = tuple(dict.fromkeys(label for label, _ in image_runs))
        samples.append(Sample(labels=labels, path=path, group=path.stem,
                              mask_loader=RleMaskLoader(image_runs)))
    missing = set(runs) - {s.path.name for s in samples}
    notes = [f"{len(missing)} images in train.csv are missing from train_images/"] if missing \
        else []
    return _Parsed(samples, tuple(SEVERSTAL_CLASSES.values()), "pixels", notes)


@register_layout("mvtec")
def _load_mvtec(root: Path) -> _Parsed:
    samples = []
    for path in _images_in(root / "train" / "good"):
        samples.append(Sample(labels=(), path=path, split="train",
                              group=_group_key(root, path), mask_loader=EmptyMaskLoader()))
    gt_root = root / "ground_truth"
    types = []
    for type_dir in _subdirs(root / "test"):
        good = type_dir.name.lower() in GOOD_LABELS
        if not good:
            types.append(type_dir.name)
        for path in _images_in(type_dir):
            if good:
                loader = EmptyMaskLoader()
            else:
                mask = gt_root / type_dir.name / f"{path.stem}_mask.png"
                loader = IndexMaskLoader(mask, binary_label=type_dir.name) \
                    if mask.is_file() else None
            samples.append(Sample(labels=() if good else (type_dir.name,), path=path,
                                  split="test", group=_group_key(root, path),
                                  mask_loader=loader))
    return _Parsed(samples, tuple(sorted(types)), "pixels")


_NEU_NAME = re.compile(r"^(.+)_(\d+)$")


def _neu_class(path: Path) -> str | None:
    m = _NEU_NAME.match(path.stem)
    return m.group(1) if m else None


def _read_voc(path: Path) -> tuple[tuple[tuple[str, float, float, float, float], ...],
                                   tuple[int, int] | None]:
    tree = ET.parse(path).getroot()
    size = None
    w, h = tree.findtext("size/width"), tree.findtext("size/height")
    if w and h and float(w) > 0 and float(h) > 0:
        size = (int(float(w)), int(float(h)))
    boxes = []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            continue
        coords = [float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append((name, *coords))
    return tuple(boxes), size


@register_layout("neu")
def _load_neu(root: Path) -> _Parsed:
    images = _child(root, "IMAGES")
    parts = [(images if images and images.is_dir() else root, _child(root, "ANNOTATIONS"), None)]
    val_images = _child(root, "Validation_Images")
    if val_images and val_images.is_dir():
        parts.append((val_images, _child(root, "Validation_Annotations"), NEU_VALIDATION_SPLIT))
    samples, classes, skipped = [], set(), 0
    any_boxes = False
    for folder, ann_dir, split in parts:
        for path in _images_in(folder):
            cls = _neu_class(path)
            if cls is None:
                skipped += 1
                continue
            labels, loader = [cls], None
            xml = ann_dir / f"{path.stem}.xml" if ann_dir else None
            if xml is not None and xml.is_file():
                boxes, size = _read_voc(xml)
                labels += [b[0] for b in boxes]
                loader = BoxMaskLoader(boxes, size)
                any_boxes = True
            labels_t = tuple(dict.fromkeys(labels))
            classes.update(labels_t)
            samples.append(Sample(labels=labels_t, path=path, split=split, group=path.stem,
                                  mask_loader=loader))
    notes = [f"skipped {skipped} images without a <class>_<n> name"] if skipped else []
    return _Parsed(samples, tuple(sorted(classes)), "boxes" if any_boxes else None, notes)


def yolo_class_names(root: Path) -> dict[int, str]:
    """Names from ``classes.txt`` (index 0 first), ``data.yaml`` ``names``, or defect."""
    for name in ("classes.txt", "labels/classes.txt"):
        path = root / name
        if path.is_file():
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            return dict(enumerate(lines))
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        path = root / name
        if path.is_file():
            import yaml

            names = (yaml.safe_load(path.read_text()) or {}).get("names")
            if isinstance(names, dict):
                return {int(k): str(v) for k, v in names.items()}
            if isinstance(names, list):
                return dict(enumerate(str(v) for v in names))
    return {0: BINARY_LABEL}


@register_layout("yolo")
def _load_yolo(root: Path) -> _Parsed:
    images_dir, labels_dir = _child(root, "images"), _child(root, "labels")
    if not (images_dir and labels_dir):
        raise ValueError(f"{root}: expected images/ and labels/")
    names = yolo_class_names(root)
    name_items = tuple(sorted(names.items()))
    samples = []
    for path in _images_in(images_dir, recursive=True):
        rel = path.relative_to(images_dir)
        split = _split_name(rel.parts[0]) if len(rel.parts) > 1 else None
        label_path = labels_dir / rel.with_suffix(".txt")
        ids = sorted({cls for cls, _ in _read_yolo(label_path)})
        labels = tuple(names.get(c, f"class_{c}") for c in ids)
        samples.append(Sample(labels=labels, path=path, split=split,
                              group=_group_key(root, path),
                              mask_loader=YoloMaskLoader(label_path, name_items)))
    return _Parsed(samples, tuple(names[k] for k in sorted(names)), "pixels")




# --------------------------------------------------------------------------- detection


def detect_layout(root: str | Path) -> str:
    """Name of the layout ``root`` is in; ValueError when none fits."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if _child(root, "train.csv") and _child(root, "train_images"):
        return "severstal"
    if (root / "train" / "good").is_dir() and (root / "test").is_dir() and (
            (root / "ground_truth").is_dir()
            or [d.name for d in _subdirs(root / "train")] == ["good"]):
        return "mvtec"  # (train/ holding more than good/ is the folders layout)
    if _child(root, "img_dir") and _child(root, "ann_dir"):
        return "mmseg"
    if _child(root, "images") and _child(root, "labels"):
        return "yolo"
    if _masks_pairs(root):
        return "masks"
    categories = [d.name for d in _subdirs(root)
                  if (d / "train" / "good").is_dir() and (d / "ground_truth").is_dir()]
    if categories:
        raise ValueError(f"{root} holds MVTec categories ({', '.join(categories[:5])}...); "
                         "point at one category folder")
    if _looks_neu(root):
        return "neu"
    if _looks_folders(root):
        return "folders"
    raise ValueError(f"cannot tell the layout of {root}; pass one of {list_layouts()}")


def _looks_neu(root: Path) -> bool:
    images = _child(root, "IMAGES")
    folder = images if images and images.is_dir() else root
    files = _images_in(folder)
    if not files:
        return False
    classes = [_neu_class(p) for p in files]
    named = [c for c in classes if c]
    return len(named) >= 0.9 * len(files) and len(set(named)) >= 2


def _looks_folders(root: Path) -> bool:
    dirs = _subdirs(root)
    split_dirs = [d for d in dirs if d.name.lower() in SPLIT_ALIASES]
    label_dirs = [ld for d in split_dirs for ld in _subdirs(d)] if split_dirs else dirs
    return any(_images_in(d, recursive=True) for d in label_dirs)
