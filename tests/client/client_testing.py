"""Helpers for the client tests (a unique module name: conftest.py files share theirs)."""

from __future__ import annotations

import io
import socket

import numpy as np
from PIL import Image

STRIP_SIZE = (128, 256)
ADMIN_PASSWORD = "admin-test-password"  # the backend fixture signs in as this admin
OPERATOR_PASSWORD = "operator-test-password"


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused: a real unreachable server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
