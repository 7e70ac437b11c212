"""Probe: does CutPaste self-supervision (Li et al., 2021) on good images only help good-only
detection on KolektorSDD?

EfficientNet-Lite0 (packaged ImageNet weights) is fine-tuned 3-way (normal / cutpaste / scar)
on the 236 good ``train`` photos at 320x128, then the 163 photos never fitted on are scored by
(a) a Gaussian (GDE) on the pooled features and (b) the head's 1 - p(normal). ``--epochs 0`` is
the ImageNet features alone. It reads the cache ``bench/anomaly_peers.py`` writes (same split
and resize as every other good-only figure in docs/RESULTS.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/cutpaste_probe.py --cache WORK/cache.npz --epochs 8
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kensa.models.backbones import create_backbone

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
BATCH = 24  # a third normal, a third cutpaste, a third scar


def cutpaste(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rectangle (2-15 % of the area, aspect 0.3-3.3) moved elsewhere, its tone jittered."""
    h, w = img.shape[:2]
    area = rng.uniform(0.02, 0.15) * h * w
    ratio = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    ph = int(min(h - 1, math.sqrt(area * ratio)))
    pw = int(min(w - 1, math.sqrt(area / ratio)))
    y0, x0 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    patch = img[y0:y0 + ph, x0:x0 + pw].astype(np.float32)
    patch = np.clip(patch * rng.uniform(0.8, 1.2) + rng.uniform(-25, 25), 0, 255)
    y1, x1 = rng.integers(0, h - ph), rng.integers(0, w - pw)
    out = img.copy()
    out[y1:y1 + ph, x1:x1 + pw] = patch.astype(np.uint8)
    return out


def scar(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thin strip (2-7 x 10-39 px) of the photo, darkened or lightened, rotated +-45 degrees,
    pasted elsewhere: the crack-like case."""
    h, w = img.shape[:2]
    sw, sl = int(rng.integers(2, 8)), int(rng.integers(10, 40))
    y0, x0 = rng.integers(0, h - sl), rng.integers(0, w - sl)
    patch = img[y0:y0 + sw, x0:x0 + sl].astype(np.float32)
    patch = np.clip(patch * rng.uniform(0.6, 1.2) + rng.uniform(-40, 25), 0, 255)
    side = sl * 2
    canvas = np.zeros((side, side, 3), np.float32)
    mask = np.zeros((side, side), np.float32)
    cy, cx = sl - sw // 2, sl // 2
    canvas[cy:cy + sw, cx:cx + sl] = patch
    mask[cy:cy + sw, cx:cx + sl] = 1
    turn = cv2.getRotationMatrix2D((sl, sl), rng.uniform(-45, 45), 1.0)
    canvas = cv2.warpAffine(canvas, turn, (side, side))
    mask = cv2.warpAffine(mask, turn, (side, side))[..., None]
    y1, x1 = rng.integers(0, h - side), rng.integers(0, w - side)
    out = img.astype(np.float32)
    region = out[y1:y1 + side, x1:x1 + side]
    region[:] = region * (1 - mask) + canvas * mask
    return out.astype(np.uint8)


def flipped(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    return np.ascontiguousarray(img)


def tensor(batch: list[np.ndarray]) -> torch.Tensor:
    x = (np.stack(batch).astype(np.float32) / 255 - MEAN) / STD
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def train(net: torch.nn.Module, images: np.ndarray, epochs: int,
          rng: np.random.Generator) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5)
    started = time.time()
    third = BATCH // 3
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(images))
        total = correct = seen = 0.0
        for start in range(0, len(order), third):
            normal = [flipped(images[i], rng) for i in order[start:start + third]]
            batch = normal + [cutpaste(im, rng) for im in normal] + [scar(im, rng)
                                                                     for im in normal]
            labels = torch.tensor([0] * len(normal) + [1] * len(normal) + [2] * len(normal))
            logits = net(tensor(batch))
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
            correct += int((logits.argmax(1) == labels).sum())
        print(f"epoch {epoch}: loss {total / seen:.4f}, accuracy {correct / seen:.3f}, "
              f"{time.time() - started:.0f} s", flush=True)
    net.eval()


@torch.inference_mode()
def pooled(net: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    return torch.cat([net.forward_head(net.forward_features(tensor(list(images[s:s + 32]))),
                                       pre_logits=True)
                      for s in range(0, len(images), 32)]).double()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True,
                        help="cache.npz of a bench/anomaly_peers.py work folder")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the result JSON here too")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = np.load(args.cache)
    good, evaluation, labels = data["train"], data["eval"], data["eval_labels"]
    net, origin = create_backbone("efficientnet_lite0", "packaged")
    net.reset_classifier(3)
    train(net, good, args.epochs, rng)

    fitted, scored = pooled(net, good), pooled(net, evaluation)
    mean = fitted.mean(0)
    covariance = torch.cov(fitted.T) + 0.01 * torch.eye(fitted.shape[1], dtype=torch.float64)
    centred = scored - mean
    distance = (centred @ torch.linalg.inv(covariance) * centred).sum(1).numpy()
    with torch.inference_mode():
        p_normal = torch.cat([net(tensor(list(evaluation[s:s + 32]))).softmax(1)[:, 0]
                              for s in range(0, len(evaluation), 32)]).numpy()
    result = {"epochs": args.epochs, "seed": args.seed, "weights": str(origin),
              "n_fit": len(good), "n_eval_good": int((labels == 0).sum()),
              "n_eval_defect": int((labels == 1).sum()),
              "gde_image_auroc": round(float(roc_auc_score(labels, distance)), 4),
              "head_image_auroc": round(float(roc_auc_score(labels, 1 - p_normal)), 4)}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
