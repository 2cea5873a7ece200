"""AWS Signature Version 4 for S3: header and presigned-query authentication.

The canonical request is rebuilt from what arrived on the wire (the raw path, the raw query, the signed headers),
signed with the secret from the credential source, and compared in constant time. Clock skew is limited to 15
minutes; a presigned URL lives at most 7 days. The payload hash the client declared (x-amz-content-sha256) is
returned for the body reader to enforce: a hex SHA-256, UNSIGNED-PAYLOAD, or one of the aws-chunked modes.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from multidict import CIMultiDictProxy

from storaged.s3.catalog import Credential, CredentialSource
from storaged.s3.errors import S3Error, access_denied

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class AuthContext:
    """Who signed the request, and what the body reader needs to keep checking signatures."""

    credential: Credential
    amz_date: str  # 20240101T000000Z
    scope: str  # 20240101/us-east-1/s3/aws4_request
    signing_key: bytes
    signature: str  # the seed signature aws-chunked bodies chain from
    payload_hash: str  # x-amz-content-sha256 as declared (hex, UNSIGNED-PAYLOAD or a STREAMING-* mode)
    presigned: bool


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def uri_encode(value: str, keep_slash: bool = False) -> str:
    return quote(value, safe="/~" if keep_slash else "~")


def canonical_query(raw_query: str, skip: str = "") -> str:
    """Every query parameter, decoded then re-encoded the SigV4 way, sorted by name then value."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        name, value = unquote(name), unquote(value)
        if name == skip:
            continue
        pairs.append((uri_encode(name), uri_encode(value)))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def canonical_paths(raw_path: str) -> list[str]:
    """The canonical URI candidates: the path re-encoded by the rules, and the path as sent if it differs."""
    normalized = uri_encode(unquote(raw_path), keep_slash=True) or "/"
    return [normalized] if normalized == raw_path else [normalized, raw_path]


def canonical_request(method: str, path: str, query: str, headers: CIMultiDictProxy[str],
                      signed_headers: list[str], payload_hash: str) -> str:
    lines = []
    for name in signed_headers:
        values = headers.getall(name, [])
        lines.append(f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in values)}\n")
    return "\n".join([method, path, query, "".join(lines), ";".join(signed_headers), payload_hash])


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def parse_amz_date(value: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError as exc:
        raise access_denied("AWS authentication requires a valid Date or x-amz-date header") from exc


@dataclass(frozen=True)
class _Parsed:
    access_key: str
    scope: str
    signed_headers: list[str]
    signature: str
    amz_date: str
    payload_hash: str
    expires: int | None


def _parse_scope(credential: str, amz_date: str, code: str) -> tuple[str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
        raise S3Error(code, f"the credential {credential!r} is not ACCESS_KEY/DATE/REGION/s3/aws4_request", 400)
    if parts[1] != amz_date[:8]:
        raise S3Error(code, f"the credential date {parts[1]} is not the request date {amz_date[:8]}", 400)
    return parts[0], "/".join(parts[1:]), parts[2]


def _parse_header_auth(value: str, headers: Mapping[str, str]) -> _Parsed:
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error("InvalidRequest", "Please use AWS4-HMAC-SHA256: other signature versions are not supported", 400)
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if sep:
            fields[name] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise S3Error("AuthorizationHeaderMalformed", "the authorization header needs Credential, SignedHeaders "
                      "and Signature", 400)
    amz_date = headers.get("x-amz-date", "")
    if not amz_date:
        raise access_denied("AWS authentication requires a valid Date or x-amz-date header")
    access_key, scope, _ = _parse_scope(fields["Credential"], amz_date, "AuthorizationHeaderMalformed")
    payload_hash = headers.get("x-amz-content-sha256", "")
    if not payload_hash:
        raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256", 400)
    if payload_hash != UNSIGNED and payload_hash not in STREAMING_MODES and not _HEX64.match(payload_hash):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or a "
                      "SHA-256 hex digest", 400)
    return _Parsed(access_key, scope, fields["SignedHeaders"].split(";"), fields["Signature"], amz_date,
                   payload_hash, None)


def _parse_query_auth(query: Mapping[str, str]) -> _Parsed:
    code = "AuthorizationQueryParametersError"
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        raise S3Error(code, "X-Amz-Algorithm only supports AWS4-HMAC-SHA256", 400)
    missing = [p for p in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                           "X-Amz-Signature") if p not in query]
    if missing:
        raise S3Error(code, f"presigned URLs need {', '.join(missing)}", 400)
    try:
        expires = int(query["X-Amz-Expires"])
    except ValueError as exc:
        raise S3Error(code, "X-Amz-Expires must be a number of seconds", 400) from exc
    if not 0 <= expires <= MAX_PRESIGN_EXPIRY_S:
        raise S3Error(code, "X-Amz-Expires must be between 0 and 604800 seconds", 400)
    amz_date = query["X-Amz-Date"]
    access_key, scope, _ = _parse_scope(query["X-Amz-Credential"], amz_date, code)
    return _Parsed(access_key, scope, query["X-Amz-SignedHeaders"].split(";"), query["X-Amz-Signature"], amz_date,
                   query.get("X-Amz-Content-Sha256", UNSIGNED), expires)


def is_signed(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    return "authorization" in headers or "X-Amz-Signature" in query or "AWSAccessKeyId" in query


async def authenticate(method: str, raw_path: str, raw_query: str, headers: CIMultiDictProxy[str],
                       query: Mapping[str, str], credentials: CredentialSource,
                       now: float | None = None) -> AuthContext:
    """Verifies a SigV4-signed request; raises S3Error (403 for a bad signature or an unknown key)."""
    now = time.time() if now is None else now
    auth_header = headers.get("authorization")
    if auth_header is not None:
        parsed = _parse_header_auth(auth_header, headers)
    elif "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        parsed = _parse_query_auth(query)
    elif "AWSAccessKeyId" in query:
        raise S3Error("InvalidRequest", "Please use AWS4-HMAC-SHA256: signature version 2 is not supported", 400)
    else:
        raise access_denied("Anonymous access is not allowed: sign the request with AWS SigV4")
    if "host" not in parsed.signed_headers:
        raise S3Error("AccessDenied", "the Host header must be signed", 403)
    if parsed.signed_headers != sorted(parsed.signed_headers):
        raise S3Error("AccessDenied", "SignedHeaders must be sorted and lowercase", 403)
    signed_at = parse_amz_date(parsed.amz_date)
    if parsed.expires is None:
        if abs(now - signed_at) > MAX_SKEW_S:
            raise S3Error("RequestTimeTooSkewed", "The difference between the request time and the server's time "
                          "is too large.", 403)
    else:
        if signed_at - now > MAX_SKEW_S:
            raise access_denied("Request is not valid yet")
        if now > signed_at + parsed.expires:
            raise access_denied("Request has expired")
    credential = await credentials.lookup(parsed.access_key)
    if credential is None:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
    date, region = parsed.scope.split("/")[:2]
    key = signing_key(credential.secret_access_key, date, region)
    query_string = canonical_query(raw_query, skip="X-Amz-Signature" if parsed.expires is not None else "")
    for path in canonical_paths(raw_path):
        canonical = canonical_request(method, path, query_string, headers, parsed.signed_headers,
                                      parsed.payload_hash)
        expected = hmac_hex(key, string_to_sign(parsed.amz_date, parsed.scope, canonical))
        if hmac.compare_digest(expected, parsed.signature):
            return AuthContext(credential, parsed.amz_date, parsed.scope, key, parsed.signature,
                               parsed.payload_hash, parsed.expires is not None)
    raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you "
                  "provided. Check your key and signing method.", 403)
