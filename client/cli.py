"""``kensa client``: the tablet/desktop app against a (remote) kensa server."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kensa.contract.constants import DEFAULT_SERVER_URL

DEFAULT_HOME = Path.home() / ".kensa"
TOKEN_ENV = "KENSA_TOKEN"  # the same variable the other client commands read


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "client", help="run the tablet client as a desktop app or a local web page",
        description="Run the Flet client against a kensa server. Tablets can instead open the "
                    "server's address in a browser: `kensa serve` serves the same client at /.",
    )
    parser.add_argument("--server", default=None,
                        help="server URL, e.g. http://192.168.1.20:8000 (default: the one saved "
                             f"in Settings, else {DEFAULT_SERVER_URL})")
    parser.add_argument("--queue-dir", type=Path, default=DEFAULT_HOME / "queue",
                        help="where photos wait while the server cannot be reached")
    parser.add_argument("--web", action="store_true",
                        help="open in the browser instead of a desktop window")
    parser.add_argument("--port", type=int, default=0, help="port for --web (default: any)")
    parser.add_argument("--token", default=None, metavar="TOKEN",
                        help="a sign-in token (POST /api/v1/auth/token) or a station key the "
                             f"client sends (default: ${TOKEN_ENV})")
    parser.set_defaults(handler=run_client)


async def server_answers(url: str) -> bool:
    """True when the kensa server at ``url`` is ready to inspect."""
    from kensa.contract.client import ApiClient

    async with ApiClient(url, timeout=5) as api:
        return await api.ready()


def run_client(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    import flet as ft

    from kensa.client.app import make_main

    if args.server:
        state = "is ready" if asyncio.run(server_answers(args.server)) else (
            "does not answer yet; photos wait on this device until it does")
        print(f"kensa client: the server at {args.server} {state}", file=sys.stderr, flush=True)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    main = make_main(args.server or DEFAULT_SERVER_URL, queue_dir=args.queue_dir,
                     web=False, server_override=args.server, token=token)
    ft.run(main, view=ft.AppView.WEB_BROWSER if args.web else ft.AppView.FLET_APP,
           port=args.port, no_cdn=True)
    return 0
