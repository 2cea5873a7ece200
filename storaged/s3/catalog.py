"""The two interfaces the S3 server needs from its surroundings: who a key belongs to, and which buckets exist.

Bucket metadata lives in the controller's Raft state in a cluster (controller_catalog.py) or in a JSON file for a
standalone storaged (local_catalog.py). Object data never leaves this host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str
    tenant_id: str
    user_id: str


@dataclass(frozen=True)
class BucketInfo:
    name: str
    tenant_id: str
    versioning: str  # "" (never enabled), "Enabled" or "Suspended"
    created_at: float


class CatalogError(Exception):
    """A catalog refusal that maps to an S3 error response."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class CredentialSource(Protocol):
    async def lookup(self, access_key_id: str) -> Credential | None: ...


class BucketCatalog(Protocol):
    async def create(self, name: str, owner: Credential) -> BucketInfo: ...
    async def get(self, name: str) -> BucketInfo | None: ...
    async def list(self, tenant_id: str) -> list[BucketInfo]: ...
    async def delete(self, name: str) -> None: ...
    async def set_versioning(self, name: str, status: str) -> BucketInfo: ...


VERSIONING_STATES = ("", "Enabled", "Suspended")
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def bucket_name_problem(name: str) -> str | None:
    """Why NAME is not a valid S3 bucket name (the general-purpose bucket rules), or None."""
    if not 3 <= len(name) <= 63:
        return "bucket names are 3 to 63 characters long"
    if any(c not in _BUCKET_CHARS for c in name):
        return "bucket names use lowercase letters, digits, dots and hyphens only"
    if name[0] in ".-" or name[-1] in ".-":
        return "bucket names begin and end with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "bucket names have no adjacent dots or dot-hyphen pairs"
    parts = name.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return "bucket names are not IP addresses"
    if name.startswith("xn--") or name.endswith("-s3alias"):
        return "bucket names do not use reserved prefixes or suffixes"
    return None
