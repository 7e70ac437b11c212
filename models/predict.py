"""``kensa predict ARTIFACT IMAGE...``: run a trained artifact on images without the server."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kensa.models.artifacts import load_detector
from kensa.models.evidence import render_overlay
from kensa.models.imaging import is_image_file, read_rgb
from kensa.models.types import Detection


def expand_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders contribute their image files (sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if is_image_file(p)))
        elif path.is_file():
            out.append(path)
        else:
            raise SystemExit(f"no such image: {path}")
    return out


def detection_summary(detection: Detection) -> dict[str, Any]:
    """JSON-ready view of a detection (masks and maps summarised, not dumped)."""
    return {
        "detector": detection.detector, "version": detection.version,
        "task": detection.task.value, "verdict": detection.verdict.value,
        "labels": detection.labels,
        "findings": [{"label": f.label, "score": round(float(f.score), 6),
                      "area_px": f.area_px, "bbox": list(f.bbox) if f.bbox else None}
                     for f in detection.findings],
        "anomaly_score": detection.anomaly_score, "threshold": detection.threshold,
        "evidence": [{"kind": e.kind, "label": e.label} for e in detection.evidence],
        "heatmaps": sorted(e.label for e in detection.layers("gradcam") if e.label),
        "timings_ms": {k: round(v, 2) for k, v in detection.timings_ms.items()},
        "runtime": detection.runtime,
    }


def predict_from_args(args: argparse.Namespace) -> int:
    detector = load_detector(args.artifact)
    images = expand_images(args.images)
    if args.overlay_dir:
        args.overlay_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in images:
        image = read_rgb(path)
        detection = detector(image)
        entry = {"image": str(path), **detection_summary(detection)}
        if args.overlay_dir:

            target = args.overlay_dir / f"{path.stem}.png"
            render_overlay(image, [detection]).save(target)
            entry["overlay"] = str(target)
        results.append(entry)
        if not args.json:
            found = ", ".join(f"{f['label']} {f['score']:.3f}" for f in entry["findings"])
            print(f"{path}: {entry['verdict']}" + (f" ({found})" if found else "")
                  + (f" -> {entry['overlay']}" if "overlay" in entry else ""))
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    return 0
