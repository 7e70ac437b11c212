"""``kensa serve --self-signed`` / ``--tls-cert --tls-key``: the service over HTTPS, with a
certificate made once for this machine and reused."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from backend_testing import free_port, stop_process
from cryptography import x509

from kensa.backend.tls import self_signed

ROOT = Path(__file__).resolve().parents[2]



def _serve(data_dir: Path, model: Path, *tls: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kensa.cli", "serve", "--no-client", "--data-dir", str(data_dir),
         "--model", str(model), "--port", str(port), *tls],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"https://127.0.0.1:{port}"


def _ready(proc: subprocess.Popen, url: str, cert: Path) -> httpx.Response:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if cert.is_file():
            try:
                response = httpx.get(f"{url}/readyz", verify=str(cert), timeout=5)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
        time.sleep(0.3)
    raise AssertionError("the HTTPS server did not become ready")



def test_self_signed_https_is_made_once_and_reused(tmp_path: Path,
                                                   patchcore_artifact: Path) -> None:
    data_dir = tmp_path / "data"
    cert = data_dir / "tls" / "cert.pem"
    proc, url = _serve(data_dir, patchcore_artifact, "--self-signed")
    try:
        assert _ready(proc, url, cert).json()["status"] == "ready"
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused ...
            httpx.get(f"{url}/healthz", timeout=5)
        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.TransportError):  # ... and so is plain HTTP
            httpx.get(f"{plain}/healthz", timeout=5)
    finally:
        stop_process(proc)
    made = cert.read_bytes()
    names = x509.load_pem_x509_certificate(made).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert oct((data_dir / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"

    proc, url = _serve(data_dir, patchcore_artifact, "--self-signed")  # a restart reuses it
    try:
        _ready(proc, url, cert)
    finally:
        stop_process(proc)
    assert cert.read_bytes() == made


def test_given_certificate_and_key(tmp_path: Path, patchcore_artifact: Path) -> None:
    cert, key = self_signed(tmp_path / "mine", names=["localhost"],
                            addresses=[ipaddress.ip_address("127.0.0.1")])
    proc, url = _serve(tmp_path / "data", patchcore_artifact, "--tls-cert", str(cert),
                       "--tls-key", str(key))
    try:
        assert _ready(proc, url, cert).status_code == 200
    finally:
        stop_process(proc)


def test_half_a_tls_configuration_is_refused(tmp_path: Path, patchcore_artifact: Path) -> None:
    proc, _ = _serve(tmp_path / "data", patchcore_artifact, "--tls-cert", "x.pem")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "go together" in output
