"""A real `thecloud-storaged run` process serving S3 on a free loopback port, with two tenants' keys."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str
    tenant_id: str
    user_id: str


TENANT_A = Keys("AKIATCTENANTA0000001", "tc-secret-a/0123456789abcdefghijklmnopqrstu", "tenant-a", "alice")
TENANT_B = Keys("AKIATCTENANTB0000001", "tc-secret-b/0123456789abcdefghijklmnopqrstu", "tenant-b", "bob")


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tc-s3-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "s3-cert.pem", directory / "s3-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class StoragedProcess:
    workdir: Path
    tls: bool = False
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auth_file = self.workdir / "local-auth.json"
        creds = [k.__dict__ for k in (TENANT_A, TENANT_B)]
        self.auth_file.write_text(json.dumps({"credentials": creds}))
        self.cert: Path | None = None
        self.key: Path | None = None
        if self.tls:
            self.cert, self.key = write_self_signed(self.workdir)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """For boto3: the CA bundle path."""
        return str(self.cert) if self.cert else True

    def http(self, **kwargs: Any) -> httpx.Client:
        """A plain HTTP client (for presigned URLs and hand-made requests)."""
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.cert)) if self.cert else True
        return httpx.Client(verify=verify, timeout=30, **kwargs)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "storaged.main", "run", "--data-dir", str(self.data_dir),
               "--s3", f"127.0.0.1:{self.port}", "--local-auth", str(self.auth_file), "--s3-max-buckets", "50"]
        if self.cert and self.key:
            cmd += ["--s3-tls-cert", str(self.cert), "--s3-tls-key", str(self.key)]
        return cmd + self.extra_args

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.workdir / "storaged.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"storaged exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with self.http() as http:
                    if http.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"storaged did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / "storaged.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc is not None else None

    def client(self, keys: Keys = TENANT_A, secret: str | None = None, **config: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=secret if secret is not None else keys.secret_access_key, verify=self.verify,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"max_attempts": 1},
                          **config))
