"""The cluster secret shared by all controllers, and the keys derived from it (HKDF-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_CHARS = 32


class ClusterSecretError(ValueError):
    pass


def generate(path: str) -> None:
    """Writes a new random secret to ``path`` with mode 0600; refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def load(path: str) -> bytes:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise ClusterSecretError(f"cannot read cluster secret file {path}: {exc.strerror}") from exc
    if len(value) < MIN_SECRET_CHARS:
        raise ClusterSecretError(f"cluster secret in {path} is too short (need >= {MIN_SECRET_CHARS} chars)")
    return value.encode()


def derive(secret: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"thecloud-v1", info=purpose.encode()).derive(secret)


def fingerprint(secret: bytes) -> str:
    """Identifies the cluster a data dir belongs to without revealing the secret."""
    return hmac.new(derive(secret, "fingerprint"), b"thecloud-data-dir", hashlib.sha256).hexdigest()[:32]


def raft_password(secret: bytes) -> str:
    return derive(secret, "raft-password").hex()
