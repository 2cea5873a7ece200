"""Token formats: API keys (``tck_<id>_<secret>``, stored as SHA-256) and short-lived HS256 JWTs."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import jwt

API_KEY_RE = re.compile(r"^tck_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
JWT_TTL_SECONDS = 900
JWT_ISSUER = "thecloud"


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    token: str
    secret_hash: str


def new_api_key() -> NewApiKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewApiKey(key_id=key_id, token=f"tck_{key_id}_{secret}", secret_hash=hash_key_secret(secret))


def hash_key_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(token: str) -> tuple[str, str] | None:
    match = API_KEY_RE.fullmatch(token)  # not .match: "$" would also accept a trailing newline
    if match is None:
        return None
    return match.group(1), match.group(2)


def key_secret_matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_key_secret(secret))


def issue_jwt(signing_key: bytes, user_id: str, tenant_id: str, now: float | None = None) -> tuple[str, float]:
    issued = now if now is not None else time.time()
    expires = issued + JWT_TTL_SECONDS
    claims = {"iss": JWT_ISSUER, "sub": user_id, "tid": tenant_id, "iat": int(issued), "exp": int(expires)}
    return jwt.encode(claims, signing_key, algorithm="HS256"), expires


def decode_jwt(signing_key: bytes, token: str) -> dict[str, object] | None:
    """The claims of a valid, unexpired token signed by this cluster, else None."""
    try:
        claims: dict[str, object] = jwt.decode(
            token, signing_key, algorithms=["HS256"], issuer=JWT_ISSUER, options={"require": ["exp", "sub", "iat"]})
    except jwt.PyJWTError:
        return None
    return claims
