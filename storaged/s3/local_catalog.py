"""Credentials and bucket metadata for a standalone storaged (and the tests): two JSON files.

The credentials file (--local-auth) is read-only here and reloaded when it changes:
  {"credentials": [{"access_key_id": ..., "secret_access_key": ..., "tenant_id": ..., "user_id": ...}]}
Buckets live in DATA_DIR/s3/buckets.json, rewritten atomically (temp file, fsync, rename, fsync dir) under a lock.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from storaged.s3.catalog import VERSIONING_STATES, BucketInfo, CatalogError, Credential, bucket_name_problem


def atomic_write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalCredentials:
    """CredentialSource backed by a JSON file, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = -1.0
        self._keys: dict[str, Credential] = {}
        self._reload()

    def _reload(self) -> None:
        mtime = self._path.stat().st_mtime
        if mtime == self._mtime:
            return
        data = json.loads(self._path.read_text(encoding="utf-8"))
        keys = {}
        for item in data.get("credentials", []):
            cred = Credential(str(item["access_key_id"]), str(item["secret_access_key"]), str(item["tenant_id"]),
                              str(item.get("user_id", "")))
            keys[cred.access_key_id] = cred
        self._keys, self._mtime = keys, mtime

    async def lookup(self, access_key_id: str) -> Credential | None:
        try:
            self._reload()
        except (OSError, ValueError, KeyError):
            pass  # keep serving the last good file
        return self._keys.get(access_key_id)


class LocalBucketCatalog:
    """BucketCatalog backed by DATA_DIR/s3/buckets.json; MAX_BUCKETS per tenant (the "buckets" quota)."""

    def __init__(self, path: Path, max_buckets: int = 100) -> None:
        self._path = path
        self._max = max_buckets
        self._lock = asyncio.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._buckets: dict[str, BucketInfo] = {}
        if path.exists():
            for item in json.loads(path.read_text(encoding="utf-8")).get("buckets", []):
                info = BucketInfo(**item)
                self._buckets[info.name] = info

    async def _save(self) -> None:
        data = {"buckets": [asdict(b) for b in sorted(self._buckets.values(), key=lambda b: b.name)]}
        await asyncio.to_thread(atomic_write_json, self._path, data)

    async def create(self, name: str, owner: Credential) -> BucketInfo:
        problem = bucket_name_problem(name)
        if problem:
            raise CatalogError("InvalidBucketName", f"The specified bucket is not valid: {problem}", 400)
        async with self._lock:
            existing = self._buckets.get(name)
            if existing is not None:
                if existing.tenant_id == owner.tenant_id:
                    raise CatalogError("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                                       "succeeded and you already own it.", 409)
                raise CatalogError("BucketAlreadyExists", "The requested bucket name is not available. Please "
                                   "select a different name and try again.", 409)
            if sum(1 for b in self._buckets.values() if b.tenant_id == owner.tenant_id) >= self._max:
                raise CatalogError("TooManyBuckets", f"You have attempted to create more buckets than allowed "
                                   f"({self._max}).", 400)
            info = BucketInfo(name=name, tenant_id=owner.tenant_id, versioning="", created_at=time.time())
            self._buckets[name] = info
            await self._save()
            return info

    async def get(self, name: str) -> BucketInfo | None:
        return self._buckets.get(name)

    async def list(self, tenant_id: str) -> list[BucketInfo]:
        return [b for b in self._buckets.values() if b.tenant_id == tenant_id]

    async def delete(self, name: str) -> None:
        async with self._lock:
            if self._buckets.pop(name, None) is not None:
                await self._save()

    async def set_versioning(self, name: str, status: str) -> BucketInfo:
        if status not in VERSIONING_STATES[1:]:
            raise CatalogError("IllegalVersioningConfigurationException", "The versioning status must be Enabled or "
                               "Suspended.", 400)
        async with self._lock:
            info = self._buckets.get(name)
            if info is None:
                raise CatalogError("NoSuchBucket", "The specified bucket does not exist", 404)
            info = replace(info, versioning=status)
            self._buckets[name] = info
            await self._save()
            return info
