"""HTTPS for the plant LAN: browsers give a page the live camera only over HTTPS.

``kensa serve --tls-cert CERT --tls-key KEY`` serves a certificate you have; ``--self-signed``
makes one for this machine once (kept in ``<data-dir>/tls/``, reused while valid) with the
machine's names and addresses, so tablets can trust it once and keep it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)
VALID_DAYS = 825  # the longest validity Apple devices accept for a TLS server certificate
RENEW_BEFORE = dt.timedelta(days=30)


def machine_names() -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """DNS names and IP addresses this machine is reached at on the LAN."""
    names = {"localhost", socket.gethostname()}
    with_domain = socket.getfqdn()
    if with_domain:
        names.add(with_domain)
    addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(ipaddress.ip_address(info[4][0].split("%")[0]))
    except OSError:
        pass
    return sorted(n for n in names if n), sorted(addresses, key=str)


def _still_valid(cert_path: Path, key_path: Path) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)


def self_signed(directory: Path, names: list[str] | None = None,
                addresses: list | None = None) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` in ``directory``: reused while valid, else made anew (an ECDSA
    P-256 key, readable by the owner only)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if _still_valid(cert_path, key_path):
        return cert_path, key_path
    if names is None or addresses is None:
        found_names, found_addresses = machine_names()
        names = names if names is not None else found_names
        addresses = addresses if addresses is not None else found_addresses
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "kensa"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kensa (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.warning("made a self-signed certificate for %s in %s; trust it once on each tablet",
                ", ".join([*names, *map(str, addresses)]), cert_path)
    return cert_path, key_path
