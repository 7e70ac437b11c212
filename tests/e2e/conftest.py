"""Fixtures for the browser tests: a real `kensa serve` on loopback and headless Chromium.

Set KENSA_E2E_URL to drive an already running server instead of starting one.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_testing import ADMIN_PASSWORD, REPO, free_port

CHROMIUM = os.environ.get("KENSA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
READY_TIMEOUT = 300  # the demo detector is fitted at first start


def _wait_ready(url: str, proc: subprocess.Popen | None, log: Path | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise RuntimeError(f"kensa serve exited with {proc.returncode}:\n{tail}")
        try:
            body = httpx.get(f"{url}/readyz", timeout=2).json()
            if body.get("status") == "ready":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"kensa serve at {url} not ready after {READY_TIMEOUT}s")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KENSA_E2E_URL")
    if external:
        _wait_ready(external.rstrip("/"), None, None)
        yield external.rstrip("/")
        return
    data_dir = tmp_path_factory.mktemp("kensa-e2e")
    port = free_port()
    log = data_dir / "serve.log"
    # No KENSA_CLIENT_TOKEN: the browser signs in on the sign-in screen like a person does.
    env = {k: v for k, v in os.environ.items() if k != "KENSA_CLIENT_TOKEN"}
    # The demo PatchCore only: the demo classifier and U-Net would be fitted in the background
    # while the browser drives the page, and appear in the middle of a test.
    env.update({"PYTHONPATH": str(REPO), "KENSA_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "KENSA_DEMO_TASKS": '["anomaly"]'})
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kensa.cli", "serve", "--data-dir", str(data_dir / "data"),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def admin_token(server_url: str) -> str:
    """The admin's token, signed in through the API (for the test's own checks)."""
    answer = httpx.post(f"{server_url}/api/v1/auth/token", timeout=30,
                        data={"username": "admin", "password": ADMIN_PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api",
                                         reason="playwright is not installed (pip install "
                                                "playwright)")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="session")
def strip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good and a defective synthetic strip as PNG files."""
    from PIL import Image

    from kensa.models.data.synthetic import SteelStripGenerator

    folder = tmp_path_factory.mktemp("strips")
    generator = SteelStripGenerator(seed=11)
    out = {}
    for name, strip in (("good", generator.good(1)),
                        ("scratches", generator.defective(2, labels=("scratches",))),
                        ("patches", generator.defective(3, labels=("patches",)))):
        buffer = io.BytesIO()
        Image.fromarray(strip.image).save(buffer, format="PNG")
        path = folder / f"{name}.png"
        path.write_bytes(buffer.getvalue())
        out[name] = path
    return out
