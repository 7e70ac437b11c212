"""``kensa export ARTIFACT --format onnx|openvino [--out DIR]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export an artifact for ONNX Runtime / OpenVINO, "
                                             "with a parity check against torch")
    p.add_argument("artifact", type=Path)
    p.add_argument("--format", choices=("onnx", "openvino"), required=True)
    p.add_argument("--out", type=Path, help="exported artifact directory "
                                            "(default: ARTIFACT-FORMAT)")
    p.add_argument("--images", type=Path, nargs="*", default=[],
                   help="real images (files or folders) added to the synthetic parity strips")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from kensa.models.export.serve import export_artifact
    from kensa.models.imaging import read_rgb
    from kensa.models.predict import expand_images

    extra = [read_rgb(p) for p in expand_images(args.images)] if args.images else []
    manifest = export_artifact(args.artifact, args.format, args.out, extra)
    print(json.dumps({"out": str(args.out or f"{args.artifact}-{args.format}"),
                      "runtime": manifest["runtime"], "parity": manifest["parity"]},
                     indent=2, default=float))
    return 0 if manifest["parity"]["passed"] else 1
