"""Encryption, key derivation, tokens and password hashing (controller.security)."""

from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from controller.security import cluster_secret, passwords, secretbox, tokens
from controller.security.cluster_secret import ClusterSecretError
from controller.security.secretbox import SecretBox

KEY_A = b"a" * 32
KEY_B = b"b" * 32


# -- secretbox ----------------------------------------------------------------------------------------

def test_secretbox_round_trip() -> None:
    box = SecretBox(KEY_A)
    token = box.encrypt("p\u00e4ssw0rd \u2603", "t1/db-password")
    assert "p\u00e4ssw0rd" not in token
    assert box.decrypt(token, "t1/db-password") == "p\u00e4ssw0rd \u2603"


def test_secretbox_uses_a_fresh_nonce_each_time() -> None:
    box = SecretBox(KEY_A)
    one, two = box.encrypt("same", "ctx"), box.encrypt("same", "ctx")
    assert one != two
    assert base64.b64decode(one)[:secretbox.NONCE_BYTES] != base64.b64decode(two)[:secretbox.NONCE_BYTES]


def test_secretbox_wrong_context_fails() -> None:
    box = SecretBox(KEY_A)
    token = box.encrypt("value", "t1/name")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        box.decrypt(token, "t2/name")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        box.decrypt(token, "t1/other")


def test_secretbox_different_key_fails() -> None:
    token = SecretBox(KEY_A).encrypt("value", "ctx")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox(KEY_B).decrypt(token, "ctx")


def test_secretbox_tampered_ciphertext_fails() -> None:
    box = SecretBox(KEY_A)
    raw = bytearray(base64.b64decode(box.encrypt("value", "ctx")))
    raw[-1] ^= 1
    with pytest.raises(ValueError, match="cannot be decrypted"):
        box.decrypt(base64.b64encode(bytes(raw)).decode(), "ctx")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_secretbox_needs_a_32_byte_key(size: int) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        SecretBox(b"k" * size)


# -- API keys ----------------------------------------------------------------------------------------

def test_new_api_key_format_and_hash() -> None:
    new = tokens.new_api_key()
    parsed = tokens.parse_api_key(new.token)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id == new.key_id
    assert len(key_id) == 16
    assert new.token == f"tck_{key_id}_{secret}"
    assert new.secret_hash == tokens.hash_key_secret(secret)
    assert tokens.key_secret_matches(new.secret_hash, secret)
    assert not tokens.key_secret_matches(new.secret_hash, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert tokens.new_api_key().token != new.token


def test_api_key_secret_may_contain_dash_and_underscore() -> None:
    token = "tck_0123456789abcdef_" + "a-b_" * 10 + "xyz"
    assert tokens.parse_api_key(token) == ("0123456789abcdef", "a-b_" * 10 + "xyz")


@pytest.mark.parametrize("token", [
    "",
    "tck_",
    "tck_0123456789abcdef_" + "a" * 42,  # secret too short
    "tck_0123456789abcdef_" + "a" * 44,  # secret too long
    "tck_0123456789ABCDEF_" + "a" * 43,  # key id must be lower-case hex
    "tck_0123456789abcde_" + "a" * 43,  # key id too short
    "tck_0123456789abcdeg_" + "a" * 43,  # not hex
    "tok_0123456789abcdef_" + "a" * 43,  # wrong prefix
    "tck_0123456789abcdef_" + "a" * 42 + "=",  # not url-safe base64
    " tck_0123456789abcdef_" + "a" * 43,
    "tck_0123456789abcdef_" + "a" * 43 + "\n",
    "Bearer tck_0123456789abcdef_" + "a" * 43,
])
def test_parse_api_key_rejects_bad_tokens(token: str) -> None:
    assert tokens.parse_api_key(token) is None


def test_hash_key_secret_is_sha256_hex() -> None:
    assert tokens.hash_key_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# -- JWT ---------------------------------------------------------------------------------------------

def test_jwt_issue_and_decode() -> None:
    now = time.time()
    token, expires = tokens.issue_jwt(KEY_A, "u1", "t1", now=now)
    assert expires == now + tokens.JWT_TTL_SECONDS
    claims = tokens.decode_jwt(KEY_A, token)
    assert claims is not None
    assert claims["sub"] == "u1"
    assert claims["tid"] == "t1"
    assert claims["iss"] == "thecloud"
    assert claims["exp"] == int(now + tokens.JWT_TTL_SECONDS)


def test_jwt_expired_is_none() -> None:
    token, _ = tokens.issue_jwt(KEY_A, "u1", "t1", now=time.time() - tokens.JWT_TTL_SECONDS - 60)
    assert tokens.decode_jwt(KEY_A, token) is None


def test_jwt_wrong_key_is_none() -> None:
    token, _ = tokens.issue_jwt(KEY_A, "u1", "t1")
    assert tokens.decode_jwt(KEY_B, token) is None


@pytest.mark.parametrize("part", [0, 1, 2])
def test_jwt_tampered_is_none(part: int) -> None:
    token, _ = tokens.issue_jwt(KEY_A, "u1", "t1")
    pieces = token.split(".")
    piece = pieces[part]
    pieces[part] = piece[:5] + ("A" if piece[5] != "A" else "B") + piece[6:]
    assert tokens.decode_jwt(KEY_A, ".".join(pieces)) is None


def test_jwt_with_swapped_subject_is_none() -> None:
    token, _ = tokens.issue_jwt(KEY_A, "u1", "t1")
    header, _, sig = token.split(".")
    forged_claims = jwt.encode({"iss": "thecloud", "sub": "admin", "iat": int(time.time()),
                                "exp": int(time.time()) + 60}, KEY_B, algorithm="HS256").split(".")[1]
    assert tokens.decode_jwt(KEY_A, f"{header}.{forged_claims}.{sig}") is None


def test_jwt_wrong_issuer_missing_claims_or_alg_none_are_refused() -> None:
    now = int(time.time())
    other_issuer = jwt.encode({"iss": "evil", "sub": "u1", "iat": now, "exp": now + 60}, KEY_A, algorithm="HS256")
    assert tokens.decode_jwt(KEY_A, other_issuer) is None
    no_exp = jwt.encode({"iss": "thecloud", "sub": "u1", "iat": now}, KEY_A, algorithm="HS256")
    assert tokens.decode_jwt(KEY_A, no_exp) is None
    no_sub = jwt.encode({"iss": "thecloud", "iat": now, "exp": now + 60}, KEY_A, algorithm="HS256")
    assert tokens.decode_jwt(KEY_A, no_sub) is None
    unsigned = jwt.encode({"iss": "thecloud", "sub": "u1", "iat": now, "exp": now + 60}, None, algorithm="none")
    assert tokens.decode_jwt(KEY_A, unsigned) is None
    assert tokens.decode_jwt(KEY_A, "not.a.jwt") is None
    assert tokens.decode_jwt(KEY_A, "") is None


# -- passwords ---------------------------------------------------------------------------------------

def test_password_hash_and_verify() -> None:
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert passwords.verify_password(stored, "correct horse") is True
    assert passwords.verify_password(stored, "wrong horse") is False
    assert passwords.hash_password("correct horse") != stored  # salted


def test_verify_password_without_hash_is_false() -> None:
    assert passwords.verify_password(None, "anything") is False
    assert passwords.verify_password("", "") is False
    # Even the password behind the internal dummy hash must not log in a user without a password.
    assert passwords.verify_password(None, "thecloud-timing-equaliser") is False


def test_verify_password_with_garbage_hash_is_false() -> None:
    assert passwords.verify_password("not-an-argon2-hash", "x") is False


# -- cluster secret ----------------------------------------------------------------------------------

def test_generate_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    cluster_secret.generate(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert len(content.strip()) == 64
    with pytest.raises(FileExistsError):
        cluster_secret.generate(str(path))
    assert path.read_text() == content


def test_generated_secrets_differ(tmp_path: Path) -> None:
    cluster_secret.generate(str(tmp_path / "a"))
    cluster_secret.generate(str(tmp_path / "b"))
    assert cluster_secret.load(str(tmp_path / "a")) != cluster_secret.load(str(tmp_path / "b"))


def test_load_strips_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "s"
    cluster_secret.generate(str(path))
    value = path.read_text().strip()
    assert cluster_secret.load(str(path)) == value.encode()
    path.write_text(f"  {value}\n\n")
    assert cluster_secret.load(str(path)) == value.encode()


def test_load_too_short_or_missing(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("x" * (cluster_secret.MIN_SECRET_CHARS - 1) + "\n")
    with pytest.raises(ClusterSecretError, match="too short"):
        cluster_secret.load(str(short))
    exact = tmp_path / "exact"
    exact.write_text("x" * cluster_secret.MIN_SECRET_CHARS)
    assert cluster_secret.load(str(exact)) == b"x" * cluster_secret.MIN_SECRET_CHARS
    with pytest.raises(ClusterSecretError, match="cannot read cluster secret file"):
        cluster_secret.load(str(tmp_path / "missing"))
    assert issubclass(ClusterSecretError, ValueError)


def test_derive_differs_per_purpose_and_secret() -> None:
    secret = b"s" * 64
    keys = {purpose: cluster_secret.derive(secret, purpose)
            for purpose in ("secrets-master", "jwt-hs256", "raft-password", "fingerprint")}
    assert all(len(k) == 32 for k in keys.values())
    assert len(set(keys.values())) == len(keys)
    assert cluster_secret.derive(secret, "jwt-hs256") == keys["jwt-hs256"]
    assert cluster_secret.derive(b"t" * 64, "jwt-hs256") != keys["jwt-hs256"]
    assert len(cluster_secret.derive(secret, "x", length=64)) == 64


def test_fingerprint_is_stable_and_distinct() -> None:
    secret = b"s" * 64
    fp = cluster_secret.fingerprint(secret)
    assert fp == cluster_secret.fingerprint(b"s" * 64)
    assert len(fp) == 32
    int(fp, 16)
    assert fp != cluster_secret.fingerprint(b"t" * 64)
    assert secret.decode() not in fp


def test_raft_password_is_derived_hex() -> None:
    secret = os.urandom(32).hex().encode()
    pw = cluster_secret.raft_password(secret)
    assert pw == cluster_secret.derive(secret, "raft-password").hex()
    assert pw == cluster_secret.raft_password(secret)
    assert pw != cluster_secret.raft_password(secret + b"x")
