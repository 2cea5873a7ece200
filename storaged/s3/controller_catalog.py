"""The S3 server's credentials and bucket records, kept by the controllers (Raft), over the host's mutual-TLS link.

Credential lookups are cached for ``CREDENTIAL_TTL`` (30 s): a deleted access key (or a disabled user) keeps
working on this storaged for at most that long. Unknown keys are not cached, so a new key works at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared.hostlink import ControllerLink, LinkError
from storaged.s3.catalog import BucketInfo, CatalogError, Credential

CREDENTIAL_TTL = 30.0
MAX_CACHED = 10_000


def refusal(exc: LinkError) -> tuple[int, str, str]:
    """(status, code, message) of a controller's refusal; (503, "ServiceUnavailable", ...) when none answered."""
    if exc.status is None:
        return 503, "ServiceUnavailable", f"the controllers cannot be reached: {exc}"
    message = str(exc).split(f"({exc.status}): ", 1)[-1]
    return exc.status, exc.code, message


def _s3_error(exc: LinkError) -> CatalogError:
    status, code, message = refusal(exc)
    if code == "quota_exceeded":
        return CatalogError("TooManyBuckets", message, 400)
    if status == 404:
        return CatalogError("NoSuchBucket", message, 404)
    if status >= 500 or not code:
        return CatalogError("ServiceUnavailable", message, 503)
    return CatalogError(code, message, status)


def _bucket(raw: dict[str, Any]) -> BucketInfo:
    created = raw.get("created_at")
    return BucketInfo(name=str(raw["name"]), tenant_id=str(raw["tenant_id"]), versioning=str(raw.get("versioning", "")),
                      created_at=_epoch(created))


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


class ControllerCatalog:
    """Both ``CredentialSource`` and ``BucketCatalog`` of storaged/s3/catalog.py, backed by the controllers."""

    def __init__(self, link: ControllerLink, clock: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._clock = clock
        self._credentials: dict[str, tuple[float, Credential]] = {}

    async def lookup(self, access_key_id: str) -> Credential | None:
        cached = self._credentials.get(access_key_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        try:
            raw = await self._link.call("GET", f"/agent/v1/s3/credentials/{quote(access_key_id, safe='')}")
        except LinkError as exc:
            status, _, message = refusal(exc)
            if status == 404:
                self._credentials.pop(access_key_id, None)
                return None
            raise CatalogError("ServiceUnavailable", message, 503) from None
        credential = Credential(access_key_id=str(raw["access_key_id"]),
                                secret_access_key=str(raw["secret_access_key"]),
                                tenant_id=str(raw["tenant_id"]), user_id=str(raw["user_id"]))
        if len(self._credentials) >= MAX_CACHED:
            self._credentials.clear()
        self._credentials[access_key_id] = (self._clock() + CREDENTIAL_TTL, credential)
        return credential

    async def create(self, name: str, owner: Credential) -> BucketInfo:
        try:
            raw = await self._link.call("POST", "/agent/v1/s3/buckets",
                                        {"name": name, "tenant_id": owner.tenant_id, "user_id": owner.user_id})
        except LinkError as exc:
            raise _s3_error(exc) from None
        return _bucket(raw)

    async def get(self, name: str) -> BucketInfo | None:
        try:
            raw = await self._link.call("GET", f"/agent/v1/s3/buckets/{quote(name, safe='')}")
        except LinkError as exc:
            error = _s3_error(exc)
            if error.status == 404:
                return None
            raise error from None
        return _bucket(raw)

    async def list(self, tenant_id: str) -> list[BucketInfo]:
        try:
            raw = await self._link.call("GET", f"/agent/v1/s3/buckets?tenant_id={quote(tenant_id, safe='')}")
        except LinkError as exc:
            raise _s3_error(exc) from None
        return [_bucket(item) for item in raw.get("items", [])]

    async def delete(self, name: str) -> None:
        try:
            await self._link.call("DELETE", f"/agent/v1/s3/buckets/{quote(name, safe='')}")
        except LinkError as exc:
            raise _s3_error(exc) from None

    async def set_versioning(self, name: str, status: str) -> BucketInfo:
        try:
            raw = await self._link.call("PUT", f"/agent/v1/s3/buckets/{quote(name, safe='')}/versioning",
                                        {"status": status})
        except LinkError as exc:
            raise _s3_error(exc) from None
        return _bucket(raw)
