"""The client side of SigV4: signs storaged's own S3 requests (backup exports and restores) with the same
canonical-request code the server verifies with, so the two cannot drift apart."""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from storaged.s3.sigv4 import (
    ALGORITHM,
    canonical_query,
    canonical_request,
    hmac_hex,
    signing_key,
    string_to_sign,
)


def object_path(bucket: str, key: str) -> str:
    """The path-style request path, already encoded the SigV4 way (sent exactly like this)."""
    return "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")


def sign(method: str, url: str, payload_hash: str, access_key_id: str, secret_access_key: str,
         region: str = "us-east-1", headers: dict[str, str] | None = None, now: float | None = None) -> dict[str, str]:
    """The headers to send with the request (``url`` as sent on the wire: encoded path and query).

    Signs host, x-amz-date, x-amz-content-sha256 and every extra header given.
    """
    parts = urlsplit(url)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    out = {k.lower(): v for k, v in (headers or {}).items()}
    out.update({"host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash})
    signed = sorted(out)
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    canonical = canonical_request(method, parts.path or "/", canonical_query(parts.query),
                                  CIMultiDictProxy(CIMultiDict(out)), signed, payload_hash)
    signature = hmac_hex(signing_key(secret_access_key, stamp[:8], region), string_to_sign(stamp, scope, canonical))
    out["authorization"] = (f"{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={';'.join(signed)}, "
                            f"Signature={signature}")
    del out["host"]  # the HTTP client sets it from the URL, to the same value
    return out
