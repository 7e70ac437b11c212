"""``kensa inspect | detectors | threshold``: talk to a running service."""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8000"
API = "/api/v1"
TOKEN_ENV = "KENSA_TOKEN"  # the bearer token the client commands send


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
    source.add_argument("--server", help=f"service URL (default {DEFAULT_SERVER})")
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
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help=f"service URL (default {DEFAULT_SERVER})")


# -- client commands ------------------------------------------------------------------------------
class CommandError(Exception):
    pass


def _request(method: str, server: str, path: str, **kwargs: Any) -> Any:
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # no per-request INFO lines
    url = server.rstrip("/") + path
    token = os.environ.get(TOKEN_ENV)  # a token from POST /api/v1/auth/token or a station key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, timeout=120, headers=headers, **kwargs)
    except httpx.TransportError as exc:
        raise CommandError(f"cannot reach {server} ({exc}); start it with `kensa serve`") from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        raise CommandError(f"{method} {path}: {response.status_code} {detail}")
    return response.json() if response.content else None


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def inspect_command(args: argparse.Namespace) -> int:
    records, rows, failed = [], [], 0
    form = {k: v for k, v in {"station": args.station, "operator": args.operator,
                              "note": args.note, "detectors": args.detectors}.items() if v}
    notices = set()
    for path in args.images:
        try:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            with path.open("rb") as fh:
                record = _request("POST", args.server, f"{API}/inspections", data=form,
                                  files={"image": (path.name, fh, content_type)})
        except (OSError, CommandError) as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        records.append({"file": str(path), **record})
        if record.get("notice"):
            notices.add(record["notice"])
        rows.append([path.name, record["verdict"], _fmt(record["anomaly_score"]),
                     ",".join(record["labels"]) or "-", str(len(record["findings"])),
                     record["id"]])
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        if rows:
            print(_table(rows, ["image", "verdict", "score", "labels", "findings", "id"]))
        for notice in sorted(notices):
            print(f"note: {notice}", file=sys.stderr)
    return 1 if failed else 0


def _artifact_rows(model_dir: Path) -> list[dict[str, Any]]:
    from kensa.backend.services.inference import artifact_dirs
    from kensa.models.artifacts import load_detector

    out = []
    for directory in artifact_dirs(model_dir):
        out.append({**load_detector(directory, device="cpu").describe(),
                    "artifact": directory.name})
    return out


def detectors_command(args: argparse.Namespace) -> int:
    try:
        if args.model_dir:
            items = _artifact_rows(args.model_dir)
        else:
            items = _request("GET", args.server or DEFAULT_SERVER, f"{API}/detectors")
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    rows = []
    for d in items:
        threshold = d.get("threshold")
        if isinstance(threshold, dict):
            threshold = ", ".join(f"{k}={v:.3g}" for k, v in threshold.items())
        elif threshold is not None:
            threshold = f"{threshold:.4g}"
        rows.append([d["name"], d.get("kind", "-"), d["task"], d["version"],
                     threshold or "-", ",".join(d.get("labels", [])),
                     "yes" if d.get("demo") else ""])
    print(_table(rows, ["name", "kind", "task", "version", "threshold", "labels", "demo"])
          if rows else "no detectors")
    return 0


def threshold_command(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"threshold": args.value}
    if args.label:
        body["label"] = args.label
    try:
        described = _request("PATCH", args.server, f"{API}/detectors/{args.name}", json=body)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{described['name']}: threshold now {described['threshold']}")
    return 0
