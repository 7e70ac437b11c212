"""The client installs and runs without torch: in a fresh interpreter where importing torch
fails, every module of kensa.client and kensa.contract imports, and `kensa client --web` serves
its page and reaches a live server."""

from __future__ import annotations

import json
import os
import pkgutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_testing import closed_port

import kensa.client
import kensa.contract
from kensa.backend.config import Settings
from kensa.backend.main import create_app

REPO = Path(__file__).resolve().parents[2]
BLOCK_TORCH = """
import sys

class NoTorch:
    \"\"\"Makes torch unimportable and remembers who asked for it.\"\"\"
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            NoTorch.attempts.append(name)
            raise ImportError(f"torch is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", BLOCK_TORCH + code], cwd=REPO, env=env,
                            **popen)


def modules_of(package) -> list[str]:
    return [package.__name__, *(m.name for m in pkgutil.walk_packages(
        package.__path__, f"{package.__name__}."))]


def test_client_and_contract_import_without_torch():
    names = modules_of(kensa.client) + modules_of(kensa.contract)
    assert "kensa.client.web" in names and "kensa.contract.client" in names
    code = f"""
import importlib, json
for name in {names!r}:
    importlib.import_module(name)
print(json.dumps({{"attempts": NoTorch.attempts, "modules": sorted(sys.modules)}}))
"""
    proc = run_without_torch(code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    loaded = report["modules"]
    assert report["attempts"] == []  # nothing even tried to import torch
    assert set(names) <= set(loaded)
    for forbidden in ("torch", "kensa.backend", "kensa.models"):
        assert not [m for m in loaded if m == forbidden or m.startswith(f"{forbidden}.")], \
            forbidden


@pytest.fixture
def live_api(tmp_path: Path, patchcore_dir: Path) -> Iterator[str]:
    """The real API (uvicorn in a thread) on a free loopback port, ready to inspect."""
    import uvicorn

    settings = Settings(data_dir=tmp_path / "data", model_dir=patchcore_dir,
                        database_url=f"sqlite:///{tmp_path / 'kensa.db'}", serve_client=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_kensa_client_web_runs_without_torch(live_api: str, tmp_path: Path):
    port = closed_port()  # free now; the client binds it
    args = ["client", "--server", live_api, "--web", "--port", str(port),
            "--queue-dir", str(tmp_path / "queue")]
    log = tmp_path / "client.log"
    code = f"""
from kensa.cli import main
sys.exit(main({args!r}))
"""
    with log.open("w") as out:
        proc = run_without_torch(code, stdout=out, stderr=subprocess.STDOUT)
    try:
        page, deadline = None, time.monotonic() + 90
        while page is None or page.status_code != 200:
            assert proc.poll() is None, f"kensa client exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no page on {port}:\n{log.read_text()}"
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            except httpx.TransportError:
                time.sleep(0.3)
        assert "<html" in page.text.lower() and "flutter" in page.text.lower()
        assert f"the server at {live_api} is ready" in log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
