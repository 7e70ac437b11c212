"""schemathesis over the whole OpenAPI of a live server on loopback (real SQLite database, the
test PatchCore): every operation, bounded and derandomized examples, as an admin. Checks: no
5xx, every response matches the documented schema, every status code is documented.

The fuzzer signs in as its own admin (``fuzz``, a name no generated path parameter hits) and
signs in again after ``/auth/logout`` revoked its token, so no operation locks it out: every
operation is fuzzed, including those that delete users and revoke keys or tokens."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from backend_testing import fresh_database, make_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from kensa.backend.config import Settings
from kensa.backend.main import create_app
from kensa.contract.constants import API_PREFIX

FUZZ_USER, FUZZ_PASSWORD = "fuzz", "fuzz-admin-password"
MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


def _serve(tmp_path: Path, model_dir: Path, database_url: str) -> Iterator[str]:
    import uvicorn

    config = make_settings(tmp_path, model_dir, database_url,
                           login_failures_per_minute=1_000_000,
                           inspections_per_minute=1_000_000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and thread.is_alive(), "server not ready"
            time.sleep(0.05)
        admin = httpx.post(f"{url}{API_PREFIX}/auth/token", data={
            "username": "admin", "password": config.admin_password}).json()["access_token"]
        created = httpx.post(f"{url}{API_PREFIX}/users", headers={
            "Authorization": f"Bearer {admin}"}, json={
            "username": FUZZ_USER, "password": FUZZ_PASSWORD, "role": "admin"})
        assert created.status_code == 201, created.text
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module", params=[os.environ.get("KENSA_FUZZ_DATABASE", "sqlite")])
def fuzz_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             patchcore_artifact: Path) -> Iterator[str]:
    """The live server on SQLite (``KENSA_FUZZ_DATABASE=postgresql`` or ``mariadb`` for the
    others: the suite runs SQLite to stay within a few minutes)."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(patchcore_artifact, root / "models" / "patchcore")
    with fresh_database(request.param, root) as url:
        yield from _serve(root, root / "models", url)


_tokens: dict[str, str] = {}


def _token(url: str) -> str:
    """The fuzzer's token, signed in again after an operation revoked it."""
    if url not in _tokens:
        answer = httpx.post(f"{url}{API_PREFIX}/auth/token", timeout=60,
                            data={"username": FUZZ_USER, "password": FUZZ_PASSWORD})
        assert answer.status_code == 200, answer.text
        _tokens[url] = answer.json()["access_token"]
    return _tokens[url]


# the OpenAPI the app declares (built without starting it); cases go to the live server
schema = schemathesis.openapi.from_dict(create_app(Settings(serve_client=False)).openapi())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case, fuzz_url: str) -> None:
    headers = {"Authorization": f"Bearer {_token(fuzz_url)}"}
    try:
        case.call_and_validate(base_url=fuzz_url, headers=headers, checks=CHECKS, timeout=120)
    finally:
        if case.operation.path.endswith("/auth/logout"):
            _tokens.pop(fuzz_url, None)
