"""TLS for the API: served with --tls-cert/--tls-key; plain HTTP refused off loopback by default."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness.controllers import REPO, ControllerNode


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "thecloud-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "api.crt", tmp / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_api_served_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    secret = tmp_path / "cluster.secret"
    subprocess.run([sys.executable, "-m", "controller.main", "gen-secret", str(secret)], cwd=REPO, check=True)
    node = ControllerNode("tls", tmp_path, secret, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    node.start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        url = f"https://{node.api}/v1/health"
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(url, verify=trust, timeout=1).json()
                if health.get("role") == "leader" and node.admin_key_file.exists():
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert health is not None and health["role"] == "leader", node.log_text()[-2000:]
        token = node.admin_key_file.read_text().strip()
        who = httpx.get(f"https://{node.api}/v1/auth/whoami", verify=trust,
                        headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert who.status_code == 200 and who.json()["user"]["name"] == "admin"
        try:
            httpx.get(f"http://{node.api}/v1/health", timeout=2)
            plain_ok = True
        except httpx.HTTPError:
            plain_ok = False
        assert not plain_ok, "a TLS listener must not answer plain HTTP"
    finally:
        node.kill()


def test_plain_http_refused_on_non_loopback_address(tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    subprocess.run([sys.executable, "-m", "controller.main", "gen-secret", str(secret)], cwd=REPO, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "controller.main", "run", "--data-dir", str(tmp_path / "d"), "--api", "0.0.0.0:18999",
         "--raft", "127.0.0.1:18998", "--cluster-secret-file", str(secret), "--admin-key-file",
         str(tmp_path / "admin.key")],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "refusing plain HTTP on non-loopback address" in result.stderr
    assert not (tmp_path / "d").exists(), "nothing may be written before the configuration is accepted"
