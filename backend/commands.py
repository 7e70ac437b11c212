"""``kensa inspect | detectors | threshold``: talk to a running service."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kensa.contract.constants import DEFAULT_SERVER_URL

if TYPE_CHECKING:
    from kensa.contract.client import ApiClient, ApiError
    from kensa.contract.schemas import DetectorPublic

T = TypeVar("T")
TOKEN_ENV = "KENSA_TOKEN"  # the bearer token (sign-in token or station key) commands send


def register(subparsers: argparse._SubParsersAction) -> None:
    inspect = subparsers.add_parser("inspect", help="send photos to a running service")
    inspect.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    _server_arg(inspect)
    inspect.add_argument("--station")
    inspect.add_argument("--operator")
    inspect.add_argument("--note")
    inspect.add_argument("--detectors", help="comma-separated detector names (default all)")
    inspect.add_argument("--json", action="store_true", help="print the records as JSON")
    inspect.set_defaults(handler=inspect_command)

    detectors = subparsers.add_parser("detectors", help="list the detectors a service runs")
    source = detectors.add_mutually_exclusive_group()
    source.add_argument("--server", help=f"service URL (default {DEFAULT_SERVER_URL})")
    source.add_argument("--model-dir", type=Path, help="list artifacts in a folder instead")
    detectors.add_argument("--json", action="store_true")
    detectors.set_defaults(handler=detectors_command)

    threshold = subparsers.add_parser("threshold", help="change a detector's threshold live")
    threshold.add_argument("name")
    threshold.add_argument("value", type=float)
    threshold.add_argument("--label", help="which label, for detectors with one per label")
    _server_arg(threshold)
    threshold.set_defaults(handler=threshold_command)


def _server_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=DEFAULT_SERVER_URL,
                        help=f"service URL (default {DEFAULT_SERVER_URL})")


# -- client commands ------------------------------------------------------------------------------
def _call(server: str, request: Callable[[ApiClient], Awaitable[T]]) -> T:
    """Run one ``request`` against ``server`` with the contract's API client."""
    from kensa.contract.client import ApiClient

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no per-request INFO lines

    async def run() -> T:
        async with ApiClient(server, token=os.environ.get(TOKEN_ENV)) as api:
            return await request(api)

    return asyncio.run(run())


def _problem(exc: ApiError, server: str) -> str:
    if exc.unreachable:
        reason = exc.__cause__ or exc.message
        return f"cannot reach {server} ({reason}); start it with `kensa serve`"
    return f"error {exc.status}: {exc.message}" if exc.status else exc.message


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def inspect_command(args: argparse.Namespace) -> int:
    from kensa.contract.client import ApiError

    records: list[dict[str, Any]] = []
    rows, failed, notices = [], 0, set()
    form = {"station": args.station or "", "operator": args.operator or "",
            "note": args.note or "",
            "detectors": [d for d in (args.detectors or "").split(",") if d]}
    for path in args.images:
        try:
            with path.open("rb") as fh:
                record = _call(args.server, lambda api, fh=fh, name=path.name:
                               api.create_inspection(fh, name, **form))
        except OSError as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        except ApiError as exc:
            failed += 1
            print(f"{path}: {_problem(exc, args.server)}", file=sys.stderr)
            continue
        records.append({"file": str(path), **record.model_dump(mode="json")})
        if record.notice:
            notices.add(record.notice)
        rows.append([path.name, record.verdict, _fmt(record.anomaly_score),
                     ",".join(record.labels) or "-", str(len(record.findings)), str(record.id)])
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        if rows:
            print(_table(rows, ["image", "verdict", "score", "labels", "findings", "id"]))
        for notice in sorted(notices):
            print(f"note: {notice}", file=sys.stderr)
    return 1 if failed else 0


def _artifact_rows(model_dir: Path) -> list[DetectorPublic]:
    from kensa.backend.services.inference import artifact_dirs
    from kensa.contract.schemas import DetectorPublic
    from kensa.models.artifacts import load_detector

    return [DetectorPublic(**{**load_detector(directory, device="cpu").describe(),
                              "artifact": directory.name})
            for directory in artifact_dirs(model_dir)]


def _threshold_text(threshold: float | dict[str, float] | None) -> str:
    if isinstance(threshold, dict):
        return ", ".join(f"{k}={v:.3g}" for k, v in threshold.items())
    return "-" if threshold is None else f"{threshold:.4g}"


def detectors_command(args: argparse.Namespace) -> int:
    from kensa.contract.client import ApiError

    server = args.server or DEFAULT_SERVER_URL
    try:
        items = (_artifact_rows(args.model_dir) if args.model_dir
                 else _call(server, lambda api: api.detectors()))
    except ApiError as exc:
        print(_problem(exc, server), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([d.model_dump(mode="json") for d in items], indent=2))
        return 0
    rows = [[d.name, d.kind or "-", d.task, d.version, _threshold_text(d.threshold),
             ",".join(d.labels), "yes" if d.demo else ""] for d in items]
    print(_table(rows, ["name", "kind", "task", "version", "threshold", "labels", "demo"])
          if rows else "no detectors")
    return 0


def threshold_command(args: argparse.Namespace) -> int:
    from kensa.contract.client import ApiError

    try:
        described = _call(args.server, lambda api: api.set_threshold(args.name, args.value,
                                                                     args.label))
    except ApiError as exc:
        print(_problem(exc, args.server), file=sys.stderr)
        return 1
    print(f"{described.name}: threshold now {described.threshold}")
    return 0
