"""The ``kensa`` command, the composition root of the command line.

``serve`` lives here because it joins the wings (the API and the web client). Every other area
adds its own subcommands through a ``register`` function, so training, talking to a service and
the client stay in their own packages.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMAND_MODULES = (
    "kensa.backend.commands",  # inspect, detectors, threshold
    "kensa.backend.user_commands",  # users add | list | passwd | remove
    "kensa.models.cli",  # train, eval, predict, synth, export
    "kensa.client.cli",  # client
)


def _register_serve(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the inspection service (API + web client)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", type=Path, help="database, models and blobs "
                       "(default $KENSA_DATA_DIR or ./kensa-data)")
    serve.add_argument("--model", type=Path, action="append", default=[], metavar="DIR",
                       help="serve this detector artifact too (repeatable)")
    serve.add_argument("--database-url", help="e.g. postgresql+psycopg://user@host/kensa")
    serve.add_argument("--no-client", action="store_true", help="API only, no web client")
    tls = serve.add_argument_group("HTTPS (tablet browsers open the camera only over HTTPS)")
    tls.add_argument("--tls-cert", type=Path, metavar="PEM", help="certificate (chain) file")
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    tls.add_argument("--self-signed", action="store_true",
                     help="make (once, then reuse) a certificate for this machine's names and "
                          "addresses in <data-dir>/tls/")
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from kensa.app import create_app
    from kensa.backend.config import Settings

    overrides: dict[str, Any] = {"extra_models": [p.resolve() for p in args.model]}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.no_client:
        overrides["serve_client"] = False
    settings = Settings(**overrides)
    if args.self_signed and (args.tls_cert or args.tls_key):
        raise SystemExit("kensa serve: give --tls-cert/--tls-key or --self-signed, not both")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("kensa serve: --tls-cert and --tls-key go together")
    cert, key = args.tls_cert, args.tls_key
    if args.self_signed:
        from kensa.backend.tls import self_signed

        cert, key = self_signed(settings.data_dir / "tls")
    scheme = "https" if cert else "http"
    print(f"kensa: data in {settings.data_dir.resolve()}, models in {settings.model_dir}, "
          f"serving on {scheme}://{args.host}:{args.port}"
          + (f" (certificate {cert})" if cert else ""), file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info",
                ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kensa", description="Visual inspection of steel and other industrial surfaces."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _register_serve(subparsers)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
