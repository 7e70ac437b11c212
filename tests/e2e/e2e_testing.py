"""Helpers shared by the browser tests (a unique module name: conftest.py files share theirs)."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port free right now (nobody listens on it until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

ADMIN_PASSWORD = "admin-e2e-password"  # the server under test starts with this admin
CLIENT_TOKEN = "kiosk-e2e-token"  # its web client's kiosk token (Settings.client_token)
