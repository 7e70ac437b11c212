"""``kensa train|eval|predict|synth``: the model side of the command line.

Handlers import their heavy modules lazily so ``kensa --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


class RegistryChoices:
    """argparse ``choices`` read from a registry the first time argparse needs them (parsing that
    option, or printing help), so building the parser imports no torch (``kensa client`` runs
    without it) and no choice list is kept by hand."""

    def __init__(self, names: Callable[[], Iterable[str]], *extra: str) -> None:
        self._source = names
        self._extra = extra
        self._names: tuple[str, ...] | None = None

    def _all(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = (*self._extra, *self._source())
        return self._names

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())


def _layouts() -> tuple[str, ...]:
    from kensa.models.data.layouts import list_layouts

    return list_layouts()


def _recipes() -> tuple[str, ...]:
    from kensa.models.data.recipes import list_recipes

    return list_recipes()


def _generators() -> tuple[str, ...]:
    from kensa.models.synthesis.registry import list_generators

    return tuple(list_generators())


def _kinds(task: str | None = None, learns_from: str | None = None) -> Callable[[], list[str]]:
    def names() -> list[str]:
        from kensa.models.registry import list_detectors

        return [s.kind for s in list_detectors()
                if (task is None or s.task.value == task)
                and (learns_from is None or s.learns_from.value == learns_from)]

    return names




def _img_size(text: str) -> tuple[int, int]:
    """``256x1600`` -> (256, 1600); ``224`` -> (224, 224)."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or N, got {text!r}") from None
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 8:
        raise argparse.ArgumentTypeError(f"expected HxW with sides >= 8, got {text!r}")
    return sizes[0], sizes[1]


def _tile(text: str) -> dict[str, int]:
    """``512:64`` -> {"size": 512, "overlap": 64}; ``512`` keeps the default overlap."""
    try:
        numbers = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE[:OVERLAP], got {text!r}") from None
    if len(numbers) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected SIZE[:OVERLAP], got {text!r}")
    return dict(zip(("size", "overlap"), numbers, strict=False))


def _override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value), the value parsed as JSON when it parses."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _common_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--layout", choices=RegistryChoices(_layouts, "auto"), default="auto",
                   metavar="LAYOUT", help="dataset layout: %(choices)s (default: auto = detect)")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--name", help="instance name shown in the service (default: the kind)")
    p.add_argument("--img-size", type=_img_size, help="input size HxW (e.g. 256x1600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="auto",
                   help="backbone start weights: auto|hub|packaged|PATH|none")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a detector on a folder of images")
    kinds = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for task, help_text in (("classify", "multi-label defect classifier"),
                            ("segment", "per-class defect masks (U-Net)")):
        p = kinds.add_parser(task, help=help_text)
        _common_train_args(p)
        p.add_argument("--arch", choices=RegistryChoices(_kinds(task)), metavar="KIND",
                       help="registered detector kind: %(choices)s")
        p.add_argument("--backbone", help="another timm / smp backbone for the default kind "
                                          "(e.g. efficientnet_b0)")
        p.add_argument("--epochs", type=int, default=30)
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--patience", type=int, default=5, help="early-stopping patience")
        p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
        p.add_argument("--rotate", action="store_true", help="add rotation augmentation")
        p.add_argument("--augment", default="default", metavar="RECIPE",
                       choices=RegistryChoices(_recipes),
                       help="augmentation recipe: %(choices)s (default: default = flips + "
                            "brightness/contrast; recorded in the artifact)")
        p.add_argument("--synthetic", type=Path, metavar="DIR",
                       help="add the marked images of a `kensa synthesize` folder to the "
                            "training split only")
        p.add_argument("--tiles", type=int, default=0, metavar="N",
                       help="cut each photo into N tiles along its long side, skip dark "
                            "tiles, for training and inference (seed 003: 6)")
        p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
        p.add_argument("--dedupe", action="store_true",
                       help="group rotated/flipped near-duplicates and split by group "
                            "(NEU-Seg); eval repeats it")
        p.set_defaults(handler=_train_supervised)
    p = kinds.add_parser("anomaly", help="good-only anomaly detector")
    _common_train_args(p)
    p.add_argument("--detector", default="patchcore", metavar="KIND",
                   choices=RegistryChoices(_kinds(learns_from="good-only")),
                   help="good-only detector kind: %(choices)s (default: patchcore)")
    p.add_argument("--epochs", type=int, help="epochs for trained detectors (flow, vae, inpaint)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--augment", nargs="?", const="pose", choices=("pose",), metavar="pose",
                   help="rotation/shift/scale augmentation while fitting (seed 001): the "
                        "flow draws a new pose every epoch (NF+DA), the others fit 4 pose "
                        "copies of each good image (--set pose_copies=N for another number)")
    p.add_argument("--native-resolution", action="store_true",
                   help="score each photo at its own size in overlapping tiles instead of "
                        "resizing it (patchcore, padim, flow); --img-size is then ignored")
    p.add_argument("--tile", type=_tile, metavar="SIZE[:OVERLAP]",
                   help="tiles of --native-resolution, pixels, multiples of 32 (default 256:64)")
    p.add_argument("--set", dest="overrides", action="append", default=[], type=_override,
                   metavar="KEY=VALUE", help="any other config field of the detector, VALUE "
                                             "as JSON where it parses (repeatable), e.g. "
                                             "--set score_top_k=64 --set layers=[1,2]")
    p.set_defaults(handler=_train_anomaly)

    ev = subparsers.add_parser("eval", help="held-out metrics of a trained artifact")
    ev.add_argument("artifact", type=Path)
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--layout", choices=RegistryChoices(_layouts, "auto"), default="auto",
                    metavar="LAYOUT", help="dataset layout: %(choices)s (default: auto = detect)")
    ev.add_argument("--split", default="test",
                    help="split to score (default: test); 'all'; for anomaly detectors "
                    "'unseen' = every image but the good training images they fitted on")
    ev.add_argument("--robust", action="store_true",
                    help="also score rotated/shifted/scaled copies (seed 001's protocol)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plots", type=Path, help="folder for confusion matrix / ROC plots")
    ev.set_defaults(handler=_evaluate)

    pr = subparsers.add_parser("predict", help="run an artifact on images without the server")
    pr.add_argument("artifact", type=Path)
    pr.add_argument("images", type=Path, nargs="+")
    pr.add_argument("--overlay-dir", type=Path, help="write overlay PNGs here")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(handler=_predict)

    ex = subparsers.add_parser("export", help="export an artifact for ONNX Runtime / OpenVINO, "
                                              "with a parity check against torch")
    ex.add_argument("artifact", type=Path)
    ex.add_argument("--format", choices=("onnx", "openvino"), required=True)
    ex.add_argument("--out", type=Path, help="exported artifact directory "
                                             "(default: ARTIFACT-FORMAT)")
    ex.add_argument("--images", type=Path, nargs="*", default=[],
                    help="real images (files or folders) added to the synthetic parity strips")
    ex.set_defaults(handler=_export)

    gen = subparsers.add_parser("synthesize", help="synthesise images of a rare defect label "
                                                   "(marked synthetic)")
    gen.add_argument("--data", type=Path, required=True, help="dataset root (its train split)")
    gen.add_argument("--layout", choices=RegistryChoices(_layouts, "auto"), default="auto",
                     metavar="LAYOUT", help="dataset layout: %(choices)s (default: auto)")
    gen.add_argument("--label", required=True, help="the defect label to synthesise")
    gen.add_argument("--method", required=True, choices=RegistryChoices(_generators),
                     metavar="METHOD", help="generator: %(choices)s")
    gen.add_argument("--count", type=int, required=True, help="images to write")
    gen.add_argument("--out", type=Path, required=True,
                     help="output folder (images go to OUT/<label>/synthetic_*.png)")
    gen.add_argument("--size", type=int, default=64,
                     help="generator side in px (DCGAN: 64 or 128; seed 003 went 64 then 128)")
    gen.add_argument("--epochs", type=int, default=50)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--limit", type=int, help="train on only the first N images of the label")
    gen.add_argument("--weights", help="inpaint: local diffusers inpainting pipeline folder")
    gen.add_argument("--device", help="cpu, cuda ... (default: cpu)")
    gen.set_defaults(handler=_synthesize)

    sy = subparsers.add_parser("synth", help="write synthetic steel strips with masks")
    sy.add_argument("--out", type=Path, required=True)
    sy.add_argument("--good", type=int, default=20)
    sy.add_argument("--defective", type=int, default=20)
    sy.add_argument("--size", type=_img_size, default=(256, 1600))
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(handler=_synth)


def _train_supervised(args: argparse.Namespace) -> int:
    from kensa.models.training.supervised import train_from_args

    return train_from_args(args)


def _train_anomaly(args: argparse.Namespace) -> int:
    from kensa.models.training.anomaly import train_from_args

    return train_from_args(args)


def _evaluate(args: argparse.Namespace) -> int:
    from kensa.models.training.evaluate import evaluate_artifact, print_report

    report = evaluate_artifact(args.artifact, args.data, layout=args.layout, split=args.split,
                               robust=args.robust, plots=args.plots)
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print_report(report)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from kensa.models.predict import predict_from_args

    return predict_from_args(args)


def _export(args: argparse.Namespace) -> int:
    from kensa.models.imaging import read_rgb
    from kensa.models.predict import expand_images
    from kensa.models.training.export import export_artifact

    extra = [read_rgb(p) for p in expand_images(args.images)] if args.images else []
    try:
        manifest = export_artifact(args.artifact, args.format, args.out, extra)
    except ValueError as exc:  # no export plan (e.g. a native-resolution detector)
        print(f"kensa export: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out or f"{args.artifact}-{args.format}"),
                      "runtime": manifest["runtime"], "parity": manifest["parity"]},
                     indent=2, default=float))
    return 0 if manifest["parity"]["passed"] else 1


def _synthesize(args: argparse.Namespace) -> int:
    from kensa.models.synthesis.run import synthesize_from_args

    return synthesize_from_args(args)


def _synth(args: argparse.Namespace) -> int:
    from kensa.models.data.synthetic import write_dataset

    root = write_dataset(args.out, n_good=args.good, n_defective=args.defective,
                         size=args.size, seed=args.seed)
    print(f"wrote synthetic strips to {root}")
    return 0
