"""What every S3 operation handler receives: the request, who signed it, and the services it may use."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from storaged.s3.catalog import BucketCatalog, BucketInfo, CredentialSource
from storaged.s3.errors import access_denied, no_such_bucket
from storaged.s3.sigv4 import AuthContext
from storaged.s3.store import ObjectStore

MAX_KEY_BYTES = 1024


@dataclass
class Services:
    credentials: CredentialSource
    catalog: BucketCatalog
    store: ObjectStore
    region: str = "us-east-1"
    min_part_size: int = 5 << 20


@dataclass
class S3Request:
    request: web.Request
    auth: AuthContext
    services: Services
    bucket: str
    key: str
    query: MultiMapping[str]
    op: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> ObjectStore:
        return self.services.store

    @property
    def tenant_id(self) -> str:
        return self.auth.credential.tenant_id

    async def owned_bucket(self, name: str | None = None) -> BucketInfo:
        """The bucket, if it exists and belongs to the caller's tenant (AccessDenied otherwise)."""
        name = self.bucket if name is None else name
        info = await self.services.catalog.get(name)
        if info is None:
            raise no_such_bucket(name)
        if info.tenant_id != self.tenant_id:
            raise access_denied()
        return info


def parse_http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def now() -> float:
    return time.time()
